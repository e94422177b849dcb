"""A bare app on the real Redis with the commerce scripts, for the property tests of issue 18.

No HTTP server and no timers: the property tests call the module functions directly with an
explicit ``now`` (the app clock of the scripts), so windows and soft closes pass without sleeps.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from server.appkeys import REDIS, SETTINGS
from server.auth import Claims
from server.commerce import interactive
from server.commerce import keys as ck
from server.commerce.payments import PAYMENTS, SimulatedProvider
from server.commerce.products import create_product
from server.commerce.sales import BATCHERS
from server.config import Settings
from server.redis.store import connect

FAR = 2**40


@asynccontextmanager
async def bare_app(redis_url: str) -> AsyncIterator[web.Application]:
    app = web.Application()
    app[SETTINGS] = Settings(redis_url=redis_url, secret="test-secret", payment_latency_ms=0)
    app[REDIS] = await connect(redis_url)
    contexts = [interactive.scripts_ctx(app)]
    for ctx in contexts:
        await ctx.__anext__()
    app[BATCHERS] = {}
    app[PAYMENTS] = SimulatedProvider(app[REDIS], 0, 0.0)
    try:
        yield app
    finally:
        for ctx in contexts:
            await ctx.aclose()
        await app[REDIS].aclose()


def new_show() -> str:
    return "i18" + secrets.token_hex(5)


def users(show_id: str, n: int) -> list[Claims]:
    return [Claims(f"u{i}", f"User {i}", "viewer", show_id, FAR) for i in range(n)]


def host(show_id: str) -> Claims:
    return Claims("host", "Host", "host", show_id, FAR)


async def product(app: web.Application, show_id: str, stock: int) -> str:
    made = await create_product(app, show_id, {"title": "P", "price": 100, "stock": stock})
    return str(made["id"])


async def orders(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    return [json.loads(v) for v in (await app[REDIS].hgetall(ck.reservations(show_id))).values()]

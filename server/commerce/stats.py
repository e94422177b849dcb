"""Live stats for the host: viewers, chat rate, likes, clicks, reservations, paid orders, GMV, funnel
(with bids, group joins and votes from the interactive commerce of issue 18)."""

from __future__ import annotations

import importlib
import time
from typing import Any

from aiohttp import web

from .. import insight
from ..appkeys import REDIS
from ..auth import STAFF, authenticate
from ..redis import keys as base
from ..shows import get_show
from . import keys as ck
from .activity import touch

INTERACTIVE_STAGES = ("bid", "group_joined", "voted")


async def _viewers(app: web.Application, show_id: str) -> tuple[int, int]:
    try:
        presence = importlib.import_module("server.realtime.presence")
        current, peak = await presence.viewer_counts(app, show_id)
        return int(current), int(peak)
    except (ImportError, AttributeError):
        return 0, 0


async def _chat_per_minute(app: web.Application, show_id: str) -> float:
    try:
        chat = importlib.import_module("server.realtime.chat")
        return float(await chat.chat_per_minute(app, show_id))
    except (ImportError, AttributeError):
        since = int(time.time() * 1000) - 60_000
        entries = await app[REDIS].xrange(
            base.chat_stream(show_id), min=f"{since}-0", max="+", count=10_000
        )
        return float(len(entries))


async def show_stats(app: web.Application, show_id: str) -> dict[str, Any]:
    redis = app[REDIS]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(base.counters(show_id))
        pipe.scard(ck.funnel(show_id, "clicked"))
        pipe.scard(ck.funnel(show_id, "reserved"))
        pipe.scard(ck.funnel(show_id, "paid"))
        for stage in INTERACTIVE_STAGES:
            pipe.scard(ck.funnel(show_id, stage))
        counters, clicked, reserved, paid, *interactive = await pipe.execute()
    current, peak = await _viewers(app, show_id)
    gmv = {
        name.removeprefix("gmv:"): int(v) for name, v in counters.items() if name.startswith("gmv:")
    }
    return {
        "show_id": show_id,
        "at": int(time.time() * 1000),
        "viewers": current,
        "peak_viewers": peak,
        "chat_per_minute": await _chat_per_minute(app, show_id),
        "chat_messages": int(counters.get("chat_messages", 0)),
        "likes": int(counters.get("likes", 0)),
        "product_clicks": int(counters.get("product_clicks", 0)),
        "reservations": int(counters.get("reservations", 0)),
        "paid_orders": int(counters.get("paid_orders", 0)),
        "gmv": gmv,
        "funnel": {
            "viewers": max(peak, clicked),
            "clicked": clicked,
            "reserved": reserved,
            "paid": paid,
            # Interactive commerce (issue 18): distinct users who bid, joined a group, voted.
            **dict(zip(INTERACTIVE_STAGES, interactive, strict=True)),
        },
        "bids": int(counters.get("bids", 0)),
        "group_joins": int(counters.get("group_joins", 0)),
        "votes": int(counters.get("votes", 0)),
        "insight": await insight.insight(app, show_id),
    }


async def handle_stats(request: web.Request) -> web.Response:
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    await authenticate(request, show_id, STAFF)
    await touch(request.app, show_id)
    return web.json_response({"stats": await show_stats(request.app, show_id)})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/shows/{show_id}/stats", handle_stats)

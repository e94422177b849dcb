"""Likes (hearts): taps are summed per show on each node and flushed every :data:`FLUSH_S` as one
HINCRBY + one ``likes`` total event, never one frame per like."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from . import insight, keys
from .appkeys import REDIS
from .auth import Claims
from .logs import retry_failed
from .protocol import Command, Message
from .store import load_script

log = logging.getLogger("liveshop.likes")
FLUSH_S = 0.2


class LikeAggregator:
    """Pending taps per show on this node."""

    def __init__(self) -> None:
        self.pending: defaultdict[str, int] = defaultdict(int)
        self.script: Any = None
        self.wake = asyncio.Event()

    def add(self, show_id: str, count: int) -> None:
        self.pending[show_id] += count
        self.wake.set()

    async def flush(self, app: web.Application) -> None:
        pending, self.pending = self.pending, defaultdict(int)
        for show_id, count in pending.items():
            await self.script(keys=[keys.counters(show_id)], args=[count, keys.channel(show_id)])

    async def run(self, app: web.Application) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self.flush(app)
            except Exception:  # Redis hiccup: these taps are lost, the next ones still count
                retry_failed(log, "likes flush failed")
            await asyncio.sleep(FLUSH_S)


LIKES = web.AppKey("likes", LikeAggregator)


async def add_likes(app: web.Application, show_id: str, count: int) -> None:
    """Count ``count`` taps for the show (flushed within ~200 ms)."""
    app[LIKES].add(show_id, count)


async def total_likes(app: web.Application, show_id: str) -> int:
    return int(await app[REDIS].hget(keys.counters(show_id), "likes") or 0)


class Like(Message, tag="like"):
    """Hearts tapped since the last `like` (clients should group taps, e.g. every 200 ms). No reply fields."""

    count: Annotated[int, Meta(ge=1, le=50, description="taps")] = 1


async def on_like(app: web.Application, claims: Claims, body: Like) -> dict[str, Any]:
    await add_likes(app, claims.show_id, body.count)
    await insight.action(app, claims.show_id, "liked", claims.user_id)
    return {}


COMMANDS = (Command(Like, on_like, bounded=True),)


async def _likes_ctx(app: web.Application) -> AsyncIterator[None]:
    aggregator = app[LIKES] = LikeAggregator()
    aggregator.script = load_script(app[REDIS], Path(__file__).with_name("likes.lua"))
    task = asyncio.create_task(aggregator.run(app))
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    if aggregator.pending:
        await aggregator.flush(app)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_likes_ctx)

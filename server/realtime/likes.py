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

from .. import insight
from ..auth import Claims
from ..logs import retry_failed
from ..protocol import Command, Message
from ..redis import broker, keys, lua
from ..ws.snapshot import SNAPSHOT_PARTS, Snapshot, SnapshotRequest
from . import pk

log = logging.getLogger("liveshop.likes")
FLUSH_S = 0.2
LIKES_LUA = lua.Script(Path(__file__).with_name("likes.lua"), libs=[broker.LUA_LIBRARY])


class LikeAggregator:
    """Pending taps per show on this node."""

    def __init__(self) -> None:
        self.pending: defaultdict[str, int] = defaultdict(int)
        self.wake = asyncio.Event()

    def add(self, show_id: str, count: int) -> None:
        self.pending[show_id] += count
        self.wake.set()

    async def flush(self, app: web.Application) -> None:
        pending, self.pending = self.pending, defaultdict(int)
        for show_id, count in pending.items():
            await LIKES_LUA(app, [keys.counters(show_id)], [count, broker.channel(show_id)])
            await pk.add_points(app, show_id, likes=count)

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


class LikesSnapshot:
    """Likes' share of the join snapshot: the show's total."""

    def snapshot_reads(self, app: web.Application, pipe: Any, request: SnapshotRequest) -> int:
        pipe.hget(keys.counters(request.show_id), "likes")
        return 1

    async def snapshot_parse(
        self, app: web.Application, request: SnapshotRequest, results: list[Any], snap: Snapshot
    ) -> None:
        snap.fields["likes"] = int(results[0] or 0)


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
    app[SNAPSHOT_PARTS].append(LikesSnapshot())
    app.cleanup_ctx.append(_likes_ctx)

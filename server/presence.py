"""Presence: per-node viewer counts in Redis, summed over live nodes; peak; who is connected.

Each node reports every second (``presence.lua``) for every show it serves; a node that stops
reporting drops out of the sum after :data:`STALE_MS`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiohttp import web

from . import keys
from .appkeys import REDIS
from .snapshot import SNAPSHOT_PARTS, Snapshot, SnapshotRequest
from .store import load_script

STALE_MS = 5000
USERS_TTL_MS = 10000
PRESENCE_SCRIPT = web.AppKey("presence_script", object)


def _live_nodes(raw: dict[str, str], now_ms: int) -> dict[str, int]:
    nodes: dict[str, int] = {}
    for node, value in raw.items():
        count, _, seen = value.partition(":")
        if count.isdigit() and seen.isdigit() and now_ms - int(seen) <= STALE_MS:
            nodes[node] = int(count)
    return nodes


def live_total(raw: dict[str, str], now_ms: int) -> int:
    """Sum of the counts of nodes that reported recently."""
    return sum(_live_nodes(raw, now_ms).values())


async def _redis_now_ms(app: web.Application) -> int:
    seconds, micros = await app[REDIS].time()
    return int(seconds) * 1000 + int(micros) // 1000


async def viewer_counts(app: web.Application, show_id: str) -> tuple[int, int]:
    """(current viewers over all nodes, peak concurrent viewers)."""
    redis = app[REDIS]
    raw = await redis.hgetall(keys.presence(show_id))
    current = sum(_live_nodes(raw, await _redis_now_ms(app)).values())
    peak = int(await redis.get(keys.peak(show_id)) or 0)
    return current, max(peak, current)


async def present_users(app: web.Application, show_id: str) -> list[tuple[str, str]]:
    """(user id, name) of every user connected to the show now, on any node."""
    redis = app[REDIS]
    raw = await redis.hgetall(keys.presence(show_id))
    users: dict[str, str] = {}
    for node in _live_nodes(raw, await _redis_now_ms(app)):
        users.update(await redis.hgetall(keys.presence_users(show_id, node)))
    return sorted(users.items())


async def report(
    app: web.Application,
    show_id: str,
    node_id: str,
    count: int,
    joined: dict[str, str],
    left: set[str],
) -> tuple[int, int]:
    """Publish this node's count and user changes for the show; returns (total, peak)."""
    redis = app[REDIS]
    users_key = keys.presence_users(show_id, node_id)
    if joined:
        await redis.hset(users_key, mapping=joined)
    if left:
        await redis.hdel(users_key, *left)
    script: Any = app[PRESENCE_SCRIPT]
    total, peak = await script(
        keys=[keys.presence(show_id), keys.peak(show_id), users_key],
        args=[node_id, count, STALE_MS, USERS_TTL_MS],
    )
    return int(total), int(peak)


class PresenceSnapshot:
    """Presence's share of the join snapshot: viewers now and the peak (not in a hub's resync)."""

    def snapshot_reads(self, app: web.Application, pipe: Any, request: SnapshotRequest) -> int:
        if request.resync:
            return 0
        pipe.hgetall(keys.presence(request.show_id))
        pipe.get(keys.peak(request.show_id))
        return 2

    async def snapshot_parse(
        self, app: web.Application, request: SnapshotRequest, results: list[Any], snap: Snapshot
    ) -> None:
        if not results:
            return
        nodes, peak = results
        viewers = live_total(
            nodes, int(time.time() * 1000)
        )  # no TIME: keyless commands split cluster pipelines
        snap.fields["viewers"] = viewers
        snap.fields["peak"] = max(int(peak or 0), viewers)


async def _presence_ctx(app: web.Application) -> Any:
    app[PRESENCE_SCRIPT] = load_script(app[REDIS], Path(__file__).with_name("presence.lua"))
    yield


def setup(app: web.Application) -> None:
    app[SNAPSHOT_PARTS].append(PresenceSnapshot())
    app.cleanup_ctx.append(_presence_ctx)

"""Presence: per-node viewer counts in Redis, summed over live nodes; peak; who is watching.

Only viewers count (:func:`counted`): staff (host, moderators) are neither "watching" nor present.

Every second this node's :class:`Reporter` counts the connections of every show's hub here and
reports them (``presence.lua``), with the users who came and went, and tells the show's local
viewers (a ``presence`` event) when the total changed. A node that stops reporting drops out of
the sum after :data:`STALE_MS`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..appkeys import REDIS
from ..logs import retry_failed
from ..redis import keys, lua
from ..ws.connection import Connection
from ..ws.hub import HUBS, Hub
from ..ws.snapshot import SNAPSHOT_PARTS, Snapshot, SnapshotRequest

log = logging.getLogger("liveshop.presence")

STALE_MS = 5000
USERS_TTL_MS = 10000
REPORT_EVERY_S = 1.0
RESEND_S = 10.0  # a presence event at least this often, even when nothing changed
PRESENCE = lua.Script(Path(__file__).with_name("presence.lua"))


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
    total, peak = await PRESENCE(
        app,
        [keys.presence(show_id), keys.peak(show_id), users_key],
        [node_id, count, STALE_MS, USERS_TTL_MS],
    )
    return int(total), int(peak)


def counted(conn: Connection) -> bool:
    """Whether a connection counts: viewers only. The host and moderators are left out of
    "viewers now" / "N watching", the peak, and the present users, and so out of a ``present``
    giveaway's entrants too (the host cannot win their own giveaway, nor can the moderators)."""
    return not conn.staff


@dataclass
class ShowPresence:
    """What this node last reported for one show."""

    users: dict[str, str] = field(default_factory=dict)  # user id → name
    sent: tuple[int, int] = (0, 0)
    sent_at: float = 0.0


class Reporter:
    """This node's presence ticks over every show its hubs serve."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.node_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.shows: dict[str, ShowPresence] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            now = time.monotonic()
            hubs = self.app[HUBS].hubs
            for show_id in [*hubs, *(s for s in self.shows if s not in hubs)]:
                try:
                    await self.tick(show_id, hubs.get(show_id), now)
                except Exception:
                    retry_failed(log, "presence report failed for %s", show_id)

    async def tick(self, show_id: str, hub: Hub | None, now: float) -> None:
        state = self.shows.get(show_id)
        if hub is None:  # the hub was dropped (idle): this node no longer serves the show
            if state is not None:
                await report(self.app, show_id, self.node_id, 0, {}, set())
                del self.shows[show_id]
            return
        if state is None:
            state = self.shows[show_id] = ShowPresence()
        conns = [conn for conn in hub.conns if counted(conn)]
        users = {conn.user_id: conn.claims.name for conn in conns}
        joined = {uid: name for uid, name in users.items() if uid not in state.users}
        left = state.users.keys() - users.keys()
        counts = await report(self.app, show_id, self.node_id, len(conns), joined, set(left))
        state.users = users
        if hub.conns and (counts != state.sent or now - state.sent_at > RESEND_S):
            state.sent, state.sent_at = counts, now
            hub.on_event(
                {"type": "presence", "viewers": counts[0], "peak": counts[1]}, False, False
            )

    async def stop(self) -> None:
        """This node leaves every show's count (it is shutting down)."""
        for show_id in list(self.shows):
            try:
                await report(self.app, show_id, self.node_id, 0, {}, set())
            except Exception:
                pass
        self.shows.clear()


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


async def _presence_ctx(app: web.Application) -> AsyncIterator[None]:
    reporter = Reporter(app)
    task = asyncio.create_task(reporter.run(), name="presence-reporter")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await reporter.stop()


def setup(app: web.Application) -> None:
    app[SNAPSHOT_PARTS].append(PresenceSnapshot())
    app.cleanup_ctx.append(_presence_ctx)

"""Per-show hubs on this node: delivery only: batching, encode once, fan-out.

All shows share one broker subscription per node (:class:`server.redis.broker.Subscriber`, one
SUBSCRIBE per show served here). Events that arrive within a window of ``batch_ms`` become one
:class:`~server.ws.connection.Batch`, encoded once per codec and audience and written to every local
connection (goim-style merged room broadcast); an event for one user (``to_user``) goes to that
user's connections only, at once. Backlogged connections are retried every window; a hub left
empty for :data:`IDLE_UNSUBSCRIBE_S` is dropped. What events *mean* is the services' business:
presence counts the hubs' connections (``server.realtime.presence``), moderation closes a banned user's
connections (``server.realtime.moderation``) through :data:`EVENT_HOOKS`.

Events published while the node's pub/sub connection is down never reach it. redis-py
resubscribes by itself when it reconnects; the second ``subscribe`` confirmation of a hub is the
sign, and :meth:`Hubs.resync` then gives the hub's viewers what they missed: the chat after the
last one delivered here (or ``history_lost`` when it is gone), a ``resync`` snapshot of the show
(the welcome's fields) and the current state of every source in ``app[RESYNC_SOURCES]``
(commerce registers its pinned products, sales and open giveaways).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from ..appkeys import SETTINGS
from ..logs import retry_failed
from ..realtime import chat
from ..redis.broker import Envelope, Subscriber
from ..shows import get_show
from . import snapshot
from .connection import Batch, Connection
from .metrics import (
    WS_BATCH_EVENTS,
    WS_EVENTS_OUT,
    WS_FANOUT_SECONDS,
    WS_FRAMES_OUT,
    WS_WRITE_SECONDS,
)
from .snapshot import SnapshotRequest

log = logging.getLogger("liveshop.hub")

IDLE_CHECK_S = 1.0
IDLE_UNSUBSCRIBE_S = 5.0
RESYNC_ATTEMPTS = 10  # 0.5 s apart

EventHook = Callable[["Hub", dict[str, Any]], None]
# Services that act on an event on every node (moderation: close a banned user's connections)
# register ``hook(hub, event)`` by event type; hooks run before the event is queued for delivery.
EVENT_HOOKS = web.AppKey("hub_event_hooks", dict[str, list[EventHook]])

ResyncSource = Callable[[web.Application, str], Awaitable[list[dict[str, Any]]]]
# Parts that keep show state clients hold (commerce: pinned products, sales) register here a
# function returning the events that bring a client up to date after a pub/sub gap.
RESYNC_SOURCES = web.AppKey("resync_sources", list[ResyncSource])


class Hub:
    """The connections of one show on this node and the events waiting for the next batch."""

    def __init__(self, hubs: Hubs, show_id: str) -> None:
        self.hubs = hubs
        self.show_id = show_id
        self.conns: set[Connection] = set()
        self.pending: list[tuple[dict[str, Any], bool, bool]] = []
        self.first_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.empty_since: float | None = None
        self.window = hubs.batch_s
        self.last_chat_id: str | None = (
            None  # the newest chat delivered here (resync starts after it)
        )

    # ----------------------------------------------------------------- membership

    def add(self, conn: Connection) -> None:
        self.conns.add(conn)
        self.empty_since = None

    def remove(self, conn: Connection) -> None:
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        if not self.conns:
            self.empty_since = time.monotonic()

    def connections_of(self, user_id: str) -> list[Connection]:
        return [conn for conn in self.conns if conn.user_id == user_id]

    # ----------------------------------------------------------------- events

    def on_event(
        self,
        event: dict[str, Any],
        droppable: bool,
        staff_only: bool,
        to_user: str | None = None,
    ) -> None:
        """An event from the broker (or injected locally): queue it for the next batch."""
        hooks = self.hubs.hooks.get(event.get("type"))  # type: ignore[arg-type]
        if hooks:
            for hook in hooks:
                hook(self, event)
        if to_user is not None:  # one user's connections, at once (never merged into a batch)
            for conn in self.connections_of(to_user):
                conn.deliver(Batch([(event, droppable, staff_only)], time.monotonic()))
            return
        if event.get("type") == "chat" and isinstance(event.get("id"), str):
            self.last_chat_id = event["id"]
        if not self.pending:
            self.first_at = time.monotonic()
        self.pending.append((event, droppable, staff_only))
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.window, self.flush)

    def flush(self) -> None:
        """Encode the window's events once per codec/audience and write them to every connection."""
        self.timer = None
        if not self.pending:
            return
        items, self.pending = self.pending, []
        batch = Batch(items, self.first_at)
        started = time.monotonic()
        events = frames = 0
        for conn in list(self.conns):
            try:
                written = conn.deliver(batch)
            except Exception:  # one broken transport must not stop the others
                log.exception("delivery failed")
                conn.close(1011, "internal error")
                continue
            if written:
                events += written
                frames += 1
        done = time.monotonic()
        WS_FRAMES_OUT.inc(frames)
        WS_EVENTS_OUT.inc(events)
        WS_BATCH_EVENTS.observe(len(items))
        WS_WRITE_SECONDS.observe(done - started)
        WS_FANOUT_SECONDS.observe(done - batch.received)
        # Adaptive window (goim-style merging): when writing to every viewer gets expensive,
        # merge more events per frame so the per-viewer write rate falls; never above --batch-max-ms.
        self.window = min(self.hubs.max_batch_s, max(self.hubs.batch_s, 2 * (done - started)))


class Hubs:
    """All hubs of this node and the broker subscription feeding them."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.batch_s = max(app[SETTINGS].batch_ms, 1) / 1000
        self.max_batch_s = max(app[SETTINGS].batch_max_ms / 1000, self.batch_s)
        self.hubs: dict[str, Hub] = {}
        self.hooks = app[EVENT_HOOKS]
        self.subscriber = Subscriber(app, self._on_event, self._on_resubscribe, name="hub")
        self.ticker: asyncio.Task[None] | None = None
        self.drainer: asyncio.Task[None] | None = None
        self.backlogged: set[Connection] = set()
        self.connections: set[Connection] = set()
        self.sub_lock = asyncio.Lock()
        self.resyncing: set[asyncio.Task[None]] = set()
        self.resyncs = 0  # hubs brought up to date after a pub/sub reconnect (tests, metrics)

    async def start(self) -> None:
        self.ticker = asyncio.create_task(self._idle_loop())
        self.drainer = asyncio.create_task(self._backlog_loop())

    async def stop(self) -> None:
        for task in (self.ticker, self.drainer, *self.resyncing):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        await self.subscriber.close()

    # ----------------------------------------------------------------- joining

    async def join(self, show_id: str, conn: Connection) -> Hub:
        """Add the connection to the show's hub, subscribing first if this node had no viewer of it."""
        hub = self.hubs.get(show_id)
        if hub is None:
            hub = self.hubs[show_id] = Hub(self, show_id)
            hub.add(conn)
        else:
            hub.add(conn)
        async with self.sub_lock:  # SUBSCRIBE/UNSUBSCRIBE of one channel never cross
            subscribed = await self.subscriber.start(show_id)
        self.connections.add(conn)
        conn.on_backlog = self.backlogged.add
        # Wait until Redis confirmed the subscription: from then on no event can be missed.
        await asyncio.wait_for(asyncio.shield(subscribed), timeout=10)
        if hub.last_chat_id is None:
            newest = await chat.last_id(self.app, show_id)  # where a later resync starts
            if hub.last_chat_id is None:
                hub.last_chat_id = newest
        return hub

    def leave(self, hub: Hub, conn: Connection) -> None:
        hub.remove(conn)
        self.connections.discard(conn)
        self.backlogged.discard(conn)

    # ----------------------------------------------------------------- broker

    def _on_event(self, show_id: str, envelope: Envelope) -> None:
        hub = self.hubs.get(show_id)
        if hub is not None:
            hub.on_event(*envelope)

    def _on_resubscribe(self, show_id: str) -> None:
        """A resubscription after a reconnect: events may have been missed."""
        hub = self.hubs.get(show_id)
        if hub is None:
            return
        task = asyncio.create_task(self.resync(hub))
        self.resyncing.add(task)
        task.add_done_callback(self.resyncing.discard)

    async def resync(self, hub: Hub) -> None:
        """Bring the hub's viewers up to date after a pub/sub gap (see the module docstring)."""
        for attempt in range(RESYNC_ATTEMPTS):  # Redis may still be coming back
            try:
                events = await self._missed(hub)
                break
            except Exception:
                retry_failed(log, "resync of %s failed", hub.show_id)
                if attempt == RESYNC_ATTEMPTS - 1:
                    return
                await asyncio.sleep(0.5)
        for event, droppable in events:
            hub.on_event(event, droppable, False)
        self.resyncs += 1
        log.info("resynced show after pub/sub reconnect", extra={"show": hub.show_id})

    async def _missed(self, hub: Hub) -> list[tuple[dict[str, Any], bool]]:
        app, show_id = self.app, hub.show_id
        since = hub.last_chat_id or "0-0"
        snap = await snapshot.take(app, SnapshotRequest(show_id, since=since, resync=True))
        events = [(e, e.get("type") == "chat" and e.get("role") == "viewer") for e in snap.events]
        resync = {
            "type": "resync",
            "reason": "pubsub_reconnect",
            "show": await get_show(app, show_id),
            **snap.fields,
        }
        events.append((resync, False))
        for source in app[RESYNC_SOURCES]:
            events += [(event, False) for event in await source(app, show_id)]
        return events

    async def _idle_loop(self) -> None:
        """Every second: drop the hubs left empty for IDLE_UNSUBSCRIBE_S (and their subscription)."""
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            now = time.monotonic()
            for hub in list(self.hubs.values()):
                if hub.empty_since is None or now - hub.empty_since <= IDLE_UNSUBSCRIBE_S:
                    continue
                try:
                    async with self.sub_lock:
                        # Re-checked under the lock: a join may have reused this hub meanwhile.
                        if hub.conns or self.hubs.get(hub.show_id) is not hub:
                            continue
                        del self.hubs[hub.show_id]
                        await self.subscriber.unsubscribe(hub.show_id)
                except Exception:
                    retry_failed(log, "unsubscribing idle show %s failed", hub.show_id)

    async def _backlog_loop(self) -> None:
        """Retry backlogged connections every batch window; close the stuck ones."""
        while True:
            await asyncio.sleep(self.batch_s)
            if not self.backlogged:
                continue
            now = time.monotonic()
            for conn in list(self.backlogged):
                if conn.closing or conn.flush():
                    self.backlogged.discard(conn)
                else:
                    conn.check_stuck(now)


HUBS = web.AppKey("hubs", Hubs)


async def hubs_ctx(app: web.Application) -> AsyncIterator[None]:
    hubs = app[HUBS] = Hubs(app)
    await hubs.start()
    yield
    await hubs.stop()


def setup(app: web.Application) -> None:
    app[RESYNC_SOURCES] = []
    app[EVENT_HOOKS] = {}
    app.cleanup_ctx.append(hubs_ctx)

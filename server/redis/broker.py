"""The broker: show events across nodes over Redis pub/sub, and their envelope.

Services (chat, sales, lottery, moderation, …) call :func:`publish`; every node subscribed to the
show (its hub, the sold-out watcher) gets the event through a :class:`Subscriber`. Events for every
node whatever it serves (revocations and bans, :mod:`server.revocation`) go through
:func:`broadcast` to the topic :data:`NODE_WIDE`. This module is the only one that knows the
channels and the envelope; Lua scripts that publish inside their atomic step use ``broker.lua``
(the same envelope), which the loader (:mod:`server.redis.lua`) prepends.

Envelope: ``{"d": droppable, "s": staff_only, "e": event}`` plus ``"u": user_id`` for an event
meant for one user's connections only. ``droppable`` events (plain danmaku) may be skipped for a
viewer that cannot keep up; all others (staff messages, commerce) are never dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from ..appkeys import REDIS
from ..logs import retry_failed
from . import keys

log = logging.getLogger("liveshop.broker")

LUA_LIBRARY = Path(__file__).with_name(
    "broker.lua"
)  # ``broker_publish(channel, event, droppable)``
SUBSCRIBE_TIMEOUT_S = 10.0
NODE_WIDE = "*"  # the topic of events for every node (show ids never contain "*")


class Envelope(NamedTuple):
    """One published event and who may see it."""

    event: dict[str, Any]
    droppable: bool
    staff_only: bool
    to_user: str | None  # only this user's connections (e.g. "you are muted"), or everyone


def channel(topic: str) -> str:
    """The pub/sub channel of a show (its hash tag keeps it in one slot), or the node-wide one."""
    return keys.NODE_CHANNEL if topic == NODE_WIDE else keys.channel(topic)


def encode(
    event: dict[str, Any], droppable: bool, staff_only: bool = False, to_user: str | None = None
) -> str:
    wrapper: dict[str, Any] = {"d": int(droppable), "s": int(staff_only), "e": event}
    if to_user is not None:
        wrapper["u"] = to_user
    return json.dumps(wrapper, separators=(",", ":"), ensure_ascii=False)


def decode(raw: str | bytes) -> Envelope:
    """The envelope of a pub/sub message; raises ValueError/KeyError/TypeError when malformed."""
    wrapper = json.loads(raw)
    to_user = wrapper.get("u")
    return Envelope(
        wrapper["e"],
        bool(wrapper["d"]),
        bool(wrapper.get("s")),
        None if to_user is None else str(to_user),
    )


async def publish(
    app: web.Application,
    show_id: str,
    event: dict[str, Any],
    *,
    droppable: bool = False,
    staff_only: bool = False,
    to_user: str | None = None,
) -> None:
    """Send ``event`` (a dict with a ``type``) to the show's viewers on every node.

    ``staff_only`` events (live stats, audit) reach only the host and moderators; ``to_user``
    events only the connections of that user.
    """
    await app[REDIS].publish(channel(show_id), encode(event, droppable, staff_only, to_user))


async def broadcast(app: web.Application, event: dict[str, Any]) -> None:
    """Send ``event`` to every node (each hears it on a subscription to :data:`NODE_WIDE`)."""
    await publish(app, NODE_WIDE, event)


OnEvent = Callable[[str, Envelope], None]
OnResubscribe = Callable[[str], None]


class Subscriber:
    """One pub/sub connection for many shows: ``on_event(show_id, envelope)`` per message.

    A topic is a show id, or :data:`NODE_WIDE` for what :func:`broadcast` sends.

    :meth:`subscribe` returns once Redis confirmed the subscription (from then on no event of the
    show can be missed). redis-py resubscribes by itself after a reconnect; each later
    confirmation of a show calls ``on_resubscribe(show_id)``: events may have been missed.
    """

    def __init__(
        self,
        app: web.Application,
        on_event: OnEvent,
        on_resubscribe: OnResubscribe | None = None,
        name: str = "broker",
    ) -> None:
        self.app = app
        self.on_event = on_event
        self.on_resubscribe = on_resubscribe
        self.name = name
        self.pubsub: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.shows: dict[str, str] = {}  # channel → show id
        self.confirmed: dict[str, asyncio.Future[None]] = {}  # show id → first confirmation

    async def subscribe(self, show_id: str) -> None:
        """SUBSCRIBE once per show; wait for Redis's confirmation (raises TimeoutError)."""
        await asyncio.wait_for(asyncio.shield(await self.start(show_id)), SUBSCRIBE_TIMEOUT_S)

    async def start(self, show_id: str) -> asyncio.Future[None]:
        """Send SUBSCRIBE (once per show); the future resolves on Redis's first confirmation."""
        future = self.confirmed.get(show_id)
        if future is None:
            if self.pubsub is None:
                self.pubsub = self.app[REDIS].pubsub()
            future = self.confirmed[show_id] = asyncio.get_running_loop().create_future()
            self.shows[channel(show_id)] = show_id
            try:
                await self.pubsub.subscribe(channel(show_id))
            except BaseException:  # not sent (Redis down): the next call tries again
                del self.confirmed[show_id], self.shows[channel(show_id)]
                raise
            if self.reader is None or self.reader.done():
                self.reader = asyncio.create_task(self._read_loop(), name=f"{self.name}-reader")
        return future

    async def unsubscribe(self, show_id: str) -> None:
        if self.confirmed.pop(show_id, None) is None:
            return
        self.shows.pop(channel(show_id), None)
        await self.pubsub.unsubscribe(channel(show_id))

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                retry_failed(log, "%s: pub/sub read failed; resubscribing", self.name)
                await asyncio.sleep(0.5)
                continue
            if message is None:
                if not self.shows:
                    await asyncio.sleep(0.05)
                continue
            show_id = self.shows.get(message["channel"])
            if show_id is None:
                continue
            kind = message["type"]
            if kind == "message":
                try:
                    envelope = decode(message["data"])
                except (ValueError, KeyError, TypeError):
                    log.warning("undecodable event on %s", message["channel"])
                    continue
                self.on_event(show_id, envelope)
            elif kind == "subscribe":
                future = self.confirmed.get(show_id)
                if future is None:
                    continue
                if not future.done():
                    future.set_result(None)
                elif self.on_resubscribe is not None:
                    self.on_resubscribe(show_id)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            try:
                await self.reader
            except (asyncio.CancelledError, Exception):
                pass
        if self.pubsub is not None:
            try:
                await self.pubsub.aclose()
            except Exception:
                pass

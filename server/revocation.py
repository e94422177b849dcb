"""Token revocation and ban fan-out to every node, at once.

A revocation is ``(show, user) → revoked_at`` (seconds) in one Redis hash: every token of that
user for that show issued at or before ``revoked_at`` is refused, on every entry point (HTTP,
WebSocket, WHIP/WHEP), while tokens minted afterwards work. Each node keeps the whole hash in
memory (checked on every request without a Redis round trip) and hears changes as node-wide broker
events (``access.revoke``, :func:`server.redis.broker.broadcast`). Bans travel the same way
(``access.ban``), so a node that holds a banned user's media (WHEP) session ends it even when it
serves no WebSocket of that show. The hash is re-read after a resubscribe and every ``RESYNC_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from .appkeys import REDIS
from .logs import retry_failed
from .redis import broker, keys

log = logging.getLogger("liveshop.revocation")

KEEP_S = 31 * 24 * 3600  # longer than any token lives: older revocations can be forgotten
RESYNC_S = 30.0  # re-read the hash this often, in case a pub/sub message was missed

# Called on every node for each access event: (app, kind, show id, user id, revoked_at).
AccessHook = Callable[[web.Application, str, str, str, int], Awaitable[None]]


def _field(show_id: str, user_id: str) -> str:
    return f"{show_id}/{user_id}"  # show ids never contain "/"


class Revocations:
    """This node's copy of the revocation hash, kept fresh by the access channel."""

    def __init__(self) -> None:
        self.revoked: dict[tuple[str, str], int] = {}
        self.hooks: list[AccessHook] = []

    def is_revoked(self, claims: Any) -> bool:
        at = self.revoked.get((claims.show_id, claims.user_id))
        return at is not None and claims.iat <= at

    def load(self, raw: dict[str, str]) -> list[str]:
        """Replace the copy from the hash; returns the fields old enough to delete."""
        fresh: dict[tuple[str, str], int] = {}
        stale = []
        horizon = time.time() - KEEP_S
        for name, value in raw.items():
            show_id, _, user_id = name.partition("/")
            try:
                at = int(value)
            except ValueError:
                stale.append(name)
                continue
            if at < horizon:
                stale.append(name)
            else:
                fresh[(show_id, user_id)] = at
        self.revoked = fresh
        return stale


REVOCATIONS = web.AppKey("revocations", Revocations)


async def _publish(app: web.Application, kind: str, show_id: str, user_id: str, at: int) -> None:
    await broker.broadcast(
        app, {"type": f"access.{kind}", "show": show_id, "user": user_id, "at": at}
    )


async def revoke(app: web.Application, show_id: str, user_id: str) -> int:
    """Refuse every token of the user for the show issued up to now, on every node; returns the time."""
    at = int(time.time())
    await app[REDIS].hset(keys.REVOKED, _field(show_id, user_id), at)
    app[REVOCATIONS].revoked[(show_id, user_id)] = at  # this node at once, before the echo
    await _publish(app, "revoke", show_id, user_id, at)
    return at


async def announce_ban(app: web.Application, show_id: str, user_id: str) -> None:
    """Tell every node a user was banned (they end the user's media sessions)."""
    await _publish(app, "ban", show_id, user_id, int(time.time()))


async def _reload(app: web.Application) -> None:
    revocations = app[REVOCATIONS]
    stale = revocations.load(await app[REDIS].hgetall(keys.REVOKED))
    if stale:
        await app[REDIS].hdel(keys.REVOKED, *stale)


async def _apply(app: web.Application, event: dict[str, Any]) -> None:
    try:
        kind = str(event["type"]).removeprefix("access.")
        show_id, user_id, at = str(event["show"]), str(event["user"]), int(event["at"])
    except (ValueError, KeyError, TypeError):
        log.warning("undecodable access event")
        return
    if kind == "revoke":
        revocations = app[REVOCATIONS]
        key = (show_id, user_id)
        revocations.revoked[key] = max(at, revocations.revoked.get(key, 0))
    for hook in app[REVOCATIONS].hooks:
        try:
            await hook(app, kind, show_id, user_id, at)
        except Exception:
            log.exception("access hook failed")


RELOAD = None  # in the listener's queue: re-read the hash (a resubscribe or the periodic resync)


async def _listen(
    app: web.Application,
    subscriber: broker.Subscriber,
    queue: asyncio.Queue[dict[str, Any] | None],
    ready: asyncio.Future[None],
) -> None:
    """Subscribe and load the hash (retrying until Redis answers), then apply events in order."""
    failures = 0
    while True:
        try:
            await subscriber.subscribe(broker.NODE_WIDE)
            await _reload(app)
            break
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
            retry_failed(log, "access events not subscribed; retrying")
            await asyncio.sleep(min(5.0, 0.2 * failures))
    ready.set_result(None)
    next_resync = time.monotonic() + RESYNC_S
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), max(0.0, next_resync - time.monotonic()))
        except TimeoutError:
            item = RELOAD
        if item is not RELOAD:
            await _apply(app, item)
            continue
        try:
            await _reload(app)
        except Exception:
            retry_failed(log, "revocations not re-read; again at the next resync")
        next_resync = time.monotonic() + RESYNC_S


async def revocations_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the revocations and hear access events for as long as the app runs."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    subscriber = broker.Subscriber(
        app,
        on_event=lambda _topic, envelope: queue.put_nowait(envelope.event),
        on_resubscribe=lambda _topic: queue.put_nowait(RELOAD),  # events may have been missed
        name="access",
    )
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_listen(app, subscriber, queue, ready))
    try:
        await asyncio.wait_for(asyncio.shield(ready), timeout=10)
    except TimeoutError:
        log.warning("access events not subscribed yet; revocations load when Redis answers")
    yield
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
    await subscriber.close()

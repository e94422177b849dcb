"""Token revocation and ban fan-out to every node, at once.

A revocation is ``(show, user) → revoked_at`` (seconds) in one Redis hash: every token of that
user for that show issued at or before ``revoked_at`` is refused, on every entry point (HTTP,
WebSocket, WHIP/WHEP), while tokens minted afterwards work. Each node keeps the whole hash in
memory (checked on every request without a Redis round trip) and hears changes on one node-wide
pub/sub channel, ``liveshop:access``. The same channel carries bans, so a node that holds a
banned user's media (WHEP) session ends it even when it serves no WebSocket of that show.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from .appkeys import REDIS

log = logging.getLogger("liveshop.revocation")

REVOKED_KEY = "liveshop:revoked"  # hash "SHOW/USER" → revoked_at (s); global, single-key ops only
ACCESS_CHANNEL = "liveshop:access"  # node-wide: {"kind": "revoke"|"ban", "show", "user", "at"}
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
    message = {"kind": kind, "show": show_id, "user": user_id, "at": at}
    await app[REDIS].publish(ACCESS_CHANNEL, json.dumps(message, separators=(",", ":")))


async def revoke(app: web.Application, show_id: str, user_id: str) -> int:
    """Refuse every token of the user for the show issued up to now, on every node; returns the time."""
    at = int(time.time())
    await app[REDIS].hset(REVOKED_KEY, _field(show_id, user_id), at)
    app[REVOCATIONS].revoked[(show_id, user_id)] = at  # this node at once, before the echo
    await _publish(app, "revoke", show_id, user_id, at)
    return at


async def announce_ban(app: web.Application, show_id: str, user_id: str) -> None:
    """Tell every node a user was banned (they end the user's media sessions)."""
    await _publish(app, "ban", show_id, user_id, int(time.time()))


async def _reload(app: web.Application) -> None:
    revocations = app[REVOCATIONS]
    stale = revocations.load(await app[REDIS].hgetall(REVOKED_KEY))
    if stale:
        await app[REDIS].hdel(REVOKED_KEY, *stale)


async def _apply(app: web.Application, raw: Any) -> None:
    try:
        message = json.loads(raw)
        kind, show_id, user_id, at = (message[k] for k in ("kind", "show", "user", "at"))
        at = int(at)
    except (ValueError, KeyError, TypeError):
        log.warning("undecodable access event")
        return
    if kind == "revoke":
        revocations = app[REVOCATIONS]
        key = (str(show_id), str(user_id))
        revocations.revoked[key] = max(at, revocations.revoked.get(key, 0))
    for hook in app[REVOCATIONS].hooks:
        try:
            await hook(app, str(kind), str(show_id), str(user_id), at)
        except Exception:
            log.exception("access hook failed")


async def _listen(app: web.Application, ready: asyncio.Future[None]) -> None:
    """Subscribe to the access channel; on any failure resubscribe and re-read the hash."""
    failures = 0
    while True:
        pubsub = app[REDIS].pubsub()
        try:
            await pubsub.subscribe(ACCESS_CHANNEL)
            await _reload(app)
            if not ready.done():
                ready.set_result(None)
            if failures:
                log.warning("access channel back after %d failed attempts", failures)
            failures = 0
            next_resync = time.monotonic() + RESYNC_S
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    await _apply(app, message["data"])
                if time.monotonic() >= next_resync:
                    await _reload(app)
                    next_resync = time.monotonic() + RESYNC_S
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            if failures == 1:  # one line per outage, not one per retry
                log.warning("access channel lost (%s); retrying", exc)
            await asyncio.sleep(min(5.0, 0.2 * failures))
        finally:
            try:
                await pubsub.aclose()
            except Exception:
                pass


async def revocations_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the revocations and listen to the access channel for as long as the app runs."""
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_listen(app, ready))
    try:
        await asyncio.wait_for(asyncio.shield(ready), timeout=10)
    except TimeoutError:
        log.warning("access channel not subscribed yet; revocations load when Redis answers")
    yield
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass

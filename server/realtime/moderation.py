"""Moderation by the host and moderators: delete, mute, ban, pin. Every action goes to the audit stream.

Each action is a WebSocket command (``mod.*``, staff only: the registry refuses other roles
before the handler runs); its schema is declared just above its handler.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from ..appkeys import REDIS
from ..auth import Claims
from ..errors import ApiError, Close, forbidden, not_found, ws_error
from ..protocol import STAFF, Command, Message
from ..redis import keys
from ..redis.broker import publish
from ..revocation import announce_ban
from ..ws.hub import EVENT_HOOKS, Hub
from ..ws.snapshot import SNAPSHOT_PARTS, Snapshot, SnapshotRequest
from .chat import check_id, entry_to_event

AUDIT_MAXLEN = 10000


async def audit(
    app: web.Application, claims: Claims, action: str, target: str, **extra: Any
) -> str:
    """Append one action to the show's audit stream; returns its id."""
    fields = {"action": action, "by": claims.user_id, "by_name": claims.name, "target": target,
              "ts": int(time.time() * 1000), **{k: str(v) for k, v in extra.items()}}  # fmt: skip
    return str(
        await app[REDIS].xadd(
            keys.audit(claims.show_id), fields, maxlen=AUDIT_MAXLEN, approximate=True
        )
    )


async def pinned(app: web.Application, show_id: str) -> dict[str, Any] | None:
    """The pinned message ``{id, uid, name, text}`` or None."""
    return _pin_view(await app[REDIS].hgetall(keys.pinned(show_id)))


def _pin_view(data: dict[str, str]) -> dict[str, Any] | None:
    return {k: data.get(k, "") for k in ("id", "uid", "name", "text")} if data.get("id") else None


class ModerationSnapshot:
    """Moderation's share of the join snapshot: a banned user is refused; the pinned message;
    a muted user finds their ``user.muted`` (with the time left) in the first batch."""

    def snapshot_reads(self, app: web.Application, pipe: Any, request: SnapshotRequest) -> int:
        pipe.hgetall(keys.pinned(request.show_id))
        if request.user_id is None:
            return 1
        pipe.sismember(keys.banned(request.show_id), request.user_id)
        pipe.hget(keys.muted(request.show_id), request.user_id)
        return 3

    async def snapshot_parse(
        self, app: web.Application, request: SnapshotRequest, results: list[Any], snap: Snapshot
    ) -> None:
        pin, *mine = results
        snap.fields["pinned"] = _pin_view(pin)
        if not mine:
            return
        banned, muted_until = mine
        if banned:
            raise ApiError(403, "banned", "you are banned from this show")
        left_ms = int(muted_until or 0) - int(time.time() * 1000)
        if left_ms > 0 and request.user_id is not None:
            event = muted_event(request.user_id, int(muted_until), -(-left_ms // 1000), "")
            snap.events.append(event)


async def _check_target(app: web.Application, claims: Claims, user_id: str) -> None:
    if user_id == claims.user_id:
        raise ApiError(400, "bad_field", "you cannot do this to yourself", field="user_id")
    host_id = await app[REDIS].hget(keys.meta(claims.show_id), "host_id")
    if user_id == host_id:
        raise forbidden("the host cannot be muted or banned")


class ModDelete(Message, tag="mod.delete"):
    """Staff: retract a chat message. Everyone receives `chat.delete`."""

    message_id: Annotated[str, Meta(max_length=64, description="id of the chat message")]


async def delete(app: web.Application, claims: Claims, body: ModDelete) -> dict[str, Any]:
    """Retract a message everywhere (history and screens)."""
    message_id = body.message_id
    show_id = claims.show_id
    check_id(message_id)
    removed = await app[REDIS].xdel(keys.chat_stream(show_id), message_id)
    if not removed:
        raise not_found("not_found", "no such message (or it is too old)")
    await publish(app, show_id, {"type": "chat.delete", "id": message_id})
    current = await pinned(app, show_id)
    if current and current["id"] == message_id:
        await app[REDIS].delete(keys.pinned(show_id))
        await publish(app, show_id, {"type": "chat.unpin"})
    await audit(app, claims, "delete", message_id)
    return {"deleted": message_id}


class ModMute(Message, tag="mod.mute"):
    """Staff: mute a user for N minutes (their chat is refused with `muted`)."""

    user_id: Annotated[str, Meta(max_length=64, description="user to mute")]
    minutes: Annotated[int, Meta(ge=1, le=1440, description="mute length")] = 10


async def mute(app: web.Application, claims: Claims, body: ModMute) -> dict[str, Any]:
    """Refuse the user's chat for ``minutes``."""
    user_id, minutes = body.user_id, body.minutes
    await _check_target(app, claims, user_id)
    until = int(time.time() * 1000) + minutes * 60_000
    await app[REDIS].hset(keys.muted(claims.show_id), user_id, until)
    await _tell_muted(app, claims, user_id, until, minutes * 60)
    await audit(app, claims, "mute", user_id, minutes=minutes)
    return {"user_id": user_id, "until": until}


def muted_event(user_id: str, until: int, seconds: int, by: str) -> dict[str, Any]:
    return {"type": "user.muted", "user_id": user_id, "until": until, "seconds": seconds, "by": by}


async def _tell_muted(
    app: web.Application, claims: Claims, user_id: str, until: int, seconds: int
) -> None:
    """The staff see who was (un)muted; the user's own connections are told at once, with the
    time left (``seconds``: no client clock needed), so the page can count down."""
    event = muted_event(user_id, until, seconds, claims.user_id)
    await publish(app, claims.show_id, event, staff_only=True)
    await publish(app, claims.show_id, event, to_user=user_id)


class ModUnmute(Message, tag="mod.unmute"):
    """Staff: lift a mute."""

    user_id: Annotated[str, Meta(max_length=64, description="user to unmute")]


async def unmute(app: web.Application, claims: Claims, body: ModUnmute) -> dict[str, Any]:
    user_id = body.user_id
    await app[REDIS].hdel(keys.muted(claims.show_id), user_id)
    await _tell_muted(app, claims, user_id, 0, 0)
    await audit(app, claims, "unmute", user_id)
    return {"user_id": user_id, "until": 0}


class ModBan(Message, tag="mod.ban"):
    """Staff: ban a user from the show: their connections close with 1008 and they cannot rejoin."""

    user_id: Annotated[str, Meta(max_length=64, description="user to ban")]


async def ban(app: web.Application, claims: Claims, body: ModBan) -> dict[str, Any]:
    """Ban the user: every node closes their connections (1008) on the ``user.banned`` event."""
    user_id = body.user_id
    await _check_target(app, claims, user_id)
    await app[REDIS].sadd(keys.banned(claims.show_id), user_id)
    event = {"type": "user.banned", "user_id": user_id, "banned": True, "by": claims.user_id}
    await publish(app, claims.show_id, event, staff_only=True)
    await announce_ban(app, claims.show_id, user_id)  # every node ends the user's media sessions
    await audit(app, claims, "ban", user_id)
    return {"user_id": user_id, "banned": True}


class ModUnban(Message, tag="mod.unban"):
    """Staff: lift a ban."""

    user_id: Annotated[str, Meta(max_length=64, description="user to unban")]


async def unban(app: web.Application, claims: Claims, body: ModUnban) -> dict[str, Any]:
    user_id = body.user_id
    await app[REDIS].srem(keys.banned(claims.show_id), user_id)
    event = {"type": "user.banned", "user_id": user_id, "banned": False, "by": claims.user_id}
    await publish(app, claims.show_id, event, staff_only=True)
    await audit(app, claims, "unban", user_id)
    return {"user_id": user_id, "banned": False}


class ModPin(Message, tag="mod.pin"):
    """Staff: pin one chat message (replaces the previous pin). Everyone receives `chat.pin`."""

    message_id: Annotated[str, Meta(max_length=64, description="id of the chat message")]


async def pin(app: web.Application, claims: Claims, body: ModPin) -> dict[str, Any]:
    """Pin one message (replacing the previous pin)."""
    message_id = body.message_id
    show_id = claims.show_id
    check_id(message_id)
    entries = await app[REDIS].xrange(
        keys.chat_stream(show_id), min=message_id, max=message_id, count=1
    )
    if not entries:
        raise not_found("not_found", "no such message (or it is too old)")
    chat = entry_to_event(*entries[0])
    pin_fields = {"id": chat["id"], "uid": chat["uid"], "name": chat["name"], "text": chat["text"]}
    await app[REDIS].hset(keys.pinned(show_id), mapping=pin_fields)
    await publish(app, show_id, {"type": "chat.pin", **pin_fields})
    await audit(app, claims, "pin", message_id)
    return {"pinned": message_id}


class ModUnpin(Message, tag="mod.unpin"):
    """Staff: remove the pinned message. Everyone receives `chat.unpin`."""


async def unpin(app: web.Application, claims: Claims, body: ModUnpin) -> dict[str, Any]:
    await app[REDIS].delete(keys.pinned(claims.show_id))
    await publish(app, claims.show_id, {"type": "chat.unpin"})
    await audit(app, claims, "unpin", "")
    return {"pinned": None}


def _close_banned(hub: Hub, event: dict[str, Any]) -> None:
    """On every node: a banned user's connections get an ``error`` and close with 1008."""
    if not event.get("banned"):
        return
    for conn in hub.connections_of(str(event.get("user_id"))):
        conn.send_message(ws_error("banned", "you were banned from this show"))
        conn.close(Close.POLICY_VIOLATION, "banned")


def setup(app: web.Application) -> None:
    app[SNAPSHOT_PARTS].append(ModerationSnapshot())
    app[EVENT_HOOKS].setdefault("user.banned", []).append(_close_banned)


COMMANDS = tuple(
    Command(schema, handler, roles=STAFF, bounded=True)
    for schema, handler in (
        (ModDelete, delete), (ModMute, mute), (ModUnmute, unmute), (ModBan, ban),
        (ModUnban, unban), (ModPin, pin), (ModUnpin, unpin),
    )
)  # fmt: skip

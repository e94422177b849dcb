"""Danmaku: validation, banned words, per-user rate limit, history (recovery) and chat per minute.

Accepting a message is one Lua script (``chat.lua``): ban/mute check, token bucket, XADD to the
bounded stream, counters and PUBLISH happen atomically, so ids and fan-out order agree on every node.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from .. import insight
from ..appkeys import REDIS, SETTINGS
from ..auth import Claims
from ..errors import ApiError, bad_request
from ..insight import alerts
from ..protocol import Command, Message
from ..redis import broker, keys, lua
from ..ws.metrics import CHAT_MESSAGES, CHAT_RATE_LIMITED, CHAT_REJECTED
from ..ws.snapshot import SNAPSHOT_PARTS, Snapshot, SnapshotRequest
from .banned_words import BannedWords, build

RECENT_ON_CONNECT = 20
CHAT_LUA = lua.Script(Path(__file__).with_name("chat.lua"), libs=[broker.LUA_LIBRARY])
STREAM_ID_RE = re.compile(r"^[0-9]{1,15}-[0-9]{1,10}$")  # fullmatch: no "\n", no non-ASCII digits


@dataclass
class ChatService:
    """Per-app chat state: the compiled banned-word matcher."""

    banned: BannedWords


CHAT = web.AppKey("chat", ChatService)


def parse_id(message_id: str) -> tuple[int, int]:
    """A stream id ``ms-seq`` as a comparable tuple."""
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)


def check_id(message_id: str, field: str = "message_id") -> str:
    if not STREAM_ID_RE.fullmatch(message_id):
        raise bad_request(
            "bad_field", f"{field} must be a message id like 1700000000000-0", field=field
        )
    return message_id


def entry_to_event(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A history stream entry as a ``chat`` event."""
    return {
        "type": "chat",
        "id": entry_id,
        "uid": fields.get("uid", ""),
        "name": fields.get("name", ""),
        "role": fields.get("role", "viewer"),
        "text": fields.get("text", ""),
        "ts": int(fields.get("ts") or 0),
    }


async def send(app: web.Application, claims: Claims, text: str) -> dict[str, Any]:
    """Accept a danmaku from ``claims``; returns ``{msg_id, ts}`` or raises ApiError with a code."""
    settings = app[SETTINGS]
    service = app[CHAT]
    text = text.strip()
    if not text:
        CHAT_REJECTED.labels("empty").inc()
        raise bad_request("bad_field", "text must not be empty", field="text")
    if len(text) > settings.chat_max_chars:
        CHAT_REJECTED.labels("too_long").inc()
        raise bad_request(
            "bad_field", f"text is longer than {settings.chat_max_chars} characters", field="text"
        )
    word = service.banned.find(text)
    if word is not None:
        CHAT_REJECTED.labels("banned_word").inc()
        await alerts.banned_word(app, claims.show_id, word)
        raise bad_request(
            "banned_word", "your message contains a word that is not allowed", word=word
        )
    show_id = claims.show_id
    status, value, *rest = await CHAT_LUA(
        app,
        [
            keys.chat_stream(show_id),
            keys.counters(show_id),
            keys.chat_bucket(show_id, claims.user_id),
            keys.muted(show_id),
            keys.banned(show_id),
            keys.chat_second(show_id, int(time.time())),
            keys.chat_epoch(show_id),
            keys.chat_trimmed(show_id),
        ],
        [
            claims.user_id, claims.name, claims.role, text, settings.chat_history,
            settings.chat_rate, settings.chat_burst, int(claims.is_staff), broker.channel(show_id),
            secrets.token_urlsafe(8),
        ],
    )  # fmt: skip
    if status == "ok":
        CHAT_MESSAGES.inc()
        return {"msg_id": value, "ts": int(rest[0])}
    CHAT_REJECTED.labels(status).inc()
    if status == "rate_limited":
        CHAT_RATE_LIMITED.inc()
        raise ApiError(
            429, "rate_limited", "you are sending messages too fast", retry_after_ms=int(value)
        )
    if status == "muted":
        raise ApiError(403, "muted", "you are muted", until=int(value))
    raise ApiError(403, "banned", "you are banned from this show")


async def epoch(app: web.Application, show_id: str) -> str:
    """The show's history epoch (created on first use)."""
    redis = app[REDIS]
    key = keys.chat_epoch(show_id)
    value = await redis.get(key)
    if value is None:
        await redis.set(key, secrets.token_urlsafe(8), nx=True)
        value = await redis.get(key)
    return str(value)


async def last_id(app: web.Application, show_id: str) -> str:
    entries = await app[REDIS].xrevrange(keys.chat_stream(show_id), count=1)
    return entries[0][0] if entries else "0-0"


def history_gap(
    since: str, client_epoch: str | None, epoch: str, first_id: str | None, trimmed_id: str | None
) -> dict[str, Any] | None:
    """The ``history_lost`` event when messages after ``since`` may be missing, else None.

    Only the MAXLEN trim loses history, and it records the newest id it removed (``trimmed_id``):
    a client that had seen that id or a later one misses nothing. Comparing with the first id
    still kept would be wrong for a client that joined an empty show (``since`` "0-0") or whose
    next message was retracted by a moderator.
    """
    first = first_id or "0-0"
    if client_epoch != epoch:
        return {
            "type": "history_lost",
            "reason": "epoch_changed",
            "since": since,
            "epoch": epoch,
            "first_id": first,
        }
    if trimmed_id is not None and parse_id(since) < parse_id(trimmed_id):
        return {
            "type": "history_lost",
            "reason": "too_old",
            "since": since,
            "epoch": epoch,
            "first_id": first,
        }
    return None


class ChatSnapshot:
    """Chat's share of the join snapshot: the epoch, the newest messages and, for a client
    that gives ``since``, the messages after it (or why they are lost)."""

    def snapshot_reads(self, app: web.Application, pipe: Any, request: SnapshotRequest) -> int:
        show_id = request.show_id
        stream = keys.chat_stream(show_id)
        pipe.get(keys.chat_epoch(show_id))
        pipe.xrevrange(stream, count=RECENT_ON_CONNECT)
        if not _valid_since(request.since):
            return 2
        pipe.xrange(stream, count=1)
        pipe.get(keys.chat_trimmed(show_id))
        pipe.xrange(stream, min="(" + str(request.since), count=app[SETTINGS].chat_history + 1)
        return 5

    async def snapshot_parse(
        self, app: web.Application, request: SnapshotRequest, results: list[Any], snap: Snapshot
    ) -> None:
        current, newest, *recovery = results
        if current is None:
            current = await epoch(app, request.show_id)
        snap.fields["epoch"] = current
        snap.fields["last_id"] = newest[0][0] if newest else "0-0"
        recent = [entry_to_event(eid, fields) for eid, fields in reversed(newest)]
        since = request.since
        floor: tuple[int, int] | None = None
        if not since:
            snap.events += recent
        else:
            lost: dict[str, Any] | None
            if recovery:
                first, trimmed, after = recovery
                first_id = first[0][0] if first else None
                client_epoch = current if request.resync else request.client_epoch
                lost = history_gap(since, client_epoch, current, first_id, trimmed)
                if request.resync and lost is None and len(after) > app[SETTINGS].chat_history:
                    lost = {"type": "history_lost", "reason": "too_old", "since": since,
                            "epoch": current, "first_id": first_id or "0-0"}  # fmt: skip
                history = (
                    recent
                    if lost and lost["reason"] == "epoch_changed"
                    else [entry_to_event(*e) for e in after]
                )
            else:
                lost = {"type": "history_lost", "reason": "too_old", "since": since,
                        "epoch": current, "first_id": "0-0"}  # fmt: skip
                history = recent
            if lost is not None:
                snap.events.append(lost)
                if request.resync:
                    history = []  # a hub's viewers keep what they have; the snapshot follows
            else:
                floor = parse_id(since)
            snap.recovered = lost is None
            snap.events += history
        # Live events held since subscribing may repeat chat already in the first batch: skip those.
        chat_ids = [parse_id(e["id"]) for e in snap.events if e.get("type") == "chat"]
        if chat_ids:
            floor = max([*chat_ids, *([floor] if floor else [])])
        snap.floor = floor


def _valid_since(since: str | None) -> bool:
    return bool(since) and STREAM_ID_RE.fullmatch(since or "") is not None


async def chat_per_minute(app: web.Application, show_id: str) -> int:
    """Danmaku accepted in the last 60 seconds (all nodes)."""
    now = int(time.time())
    values = await app[REDIS].mget([keys.chat_second(show_id, s) for s in range(now - 59, now + 1)])
    return sum(int(v) for v in values if v)


# -- WebSocket command ----------------------------------------------------------------------


class ChatSend(Message, tag="chat"):
    """Send a danmaku. Replied with `{msg_id, ts}`; the message itself arrives to everyone as a `chat` event."""

    text: Annotated[
        str,
        Meta(
            max_length=4096, description="1..chat_max_chars (default 200) characters after trimming"
        ),
    ]


async def on_chat(app: web.Application, claims: Claims, body: ChatSend) -> dict[str, Any]:
    sent = await send(app, claims, body.text)
    await insight.action(app, claims.show_id, "chatted", claims.user_id)
    return sent


COMMANDS = (Command(ChatSend, on_chat, bounded=True),)


def setup(app: web.Application) -> None:
    app[CHAT] = ChatService(banned=build(app[SETTINGS].banned_words))
    app[SNAPSHOT_PARTS].append(ChatSnapshot())

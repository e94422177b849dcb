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

from . import insight, keys
from .appkeys import REDIS, SETTINGS
from .auth import Claims
from .banned_words import BannedWords, build
from .errors import ApiError, bad_request
from .protocol import Command, Message
from .store import load_script
from .ws_metrics import CHAT_MESSAGES, CHAT_RATE_LIMITED, CHAT_REJECTED

RECENT_ON_CONNECT = 20
STREAM_ID_RE = re.compile(r"^[0-9]{1,15}-[0-9]{1,10}$")  # fullmatch: no "\n", no non-ASCII digits


@dataclass
class ChatService:
    """Per-app chat state: the compiled banned-word matcher and the registered script."""

    banned: BannedWords
    script: Any = None


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
        raise bad_request(
            "banned_word", "your message contains a word that is not allowed", word=word
        )
    show_id = claims.show_id
    status, value, *rest = await service.script(
        keys=[
            keys.chat_stream(show_id),
            keys.counters(show_id),
            keys.chat_bucket(show_id, claims.user_id),
            keys.muted(show_id),
            keys.banned(show_id),
            keys.chat_second(show_id, int(time.time())),
            keys.chat_epoch(show_id),
            keys.chat_trimmed(show_id),
        ],
        args=[
            claims.user_id, claims.name, claims.role, text, settings.chat_history,
            settings.chat_rate, settings.chat_burst, int(claims.is_staff), keys.channel(show_id),
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


async def recent(
    app: web.Application, show_id: str, count: int = RECENT_ON_CONNECT
) -> list[dict[str, Any]]:
    """The newest ``count`` messages, oldest first."""
    entries = await app[REDIS].xrevrange(keys.chat_stream(show_id), count=count)
    return [entry_to_event(eid, fields) for eid, fields in reversed(entries)]


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


async def _chat_ctx(app: web.Application) -> Any:
    app[CHAT].script = load_script(app[REDIS], Path(__file__).with_name("chat.lua"))
    yield


def setup(app: web.Application) -> None:
    app[CHAT] = ChatService(banned=build(app[SETTINGS].banned_words))
    app.cleanup_ctx.append(_chat_ctx)

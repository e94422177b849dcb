"""The gateway's own server → client messages and the real-time layer's events, declared once.

Registered by the gateway (``server.ws.gateway.setup``) under the docs sections below; each is an
:class:`~.registry.Event` Struct: its docstring and field descriptions are docs/protocol.md's
tables, and tests check real frames against them.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from .registry import Event


class Welcome(Event, tag="welcome"):
    """First frame after connecting. Followed by one `batch` with recent or recovered chat."""

    user: Annotated[dict[str, Any], Meta(description="`{id, name, role}` of this connection")]
    show: Annotated[
        dict[str, Any],
        Meta(
            description="the show: `{id, title, host_name, status, created_at, live_since,"
            " cohost}` (`cohost`: the live co-host `{user_id, name, since}` or null)"
        ),
    ]
    epoch: Annotated[
        str, Meta(description="chat history epoch; pass it back with `since` to recover")
    ]
    last_id: Annotated[
        str, Meta(description='id of the newest chat message in history ("0-0" if none)')
    ]
    recovered: Annotated[
        bool, Meta(description="true when `since` was given and every missed message follows")
    ]
    viewers: Annotated[int, Meta(description="current viewers of the show (all nodes)")]
    peak: Annotated[int, Meta(description="peak concurrent viewers")]
    likes: Annotated[int, Meta(description="total likes")]
    pinned: Annotated[
        dict[str, Any] | None, Meta(description="the pinned chat `{id, uid, name, text}` or null")
    ]
    codec: Annotated[str, Meta(description="the negotiated subprotocol")]
    limits: Annotated[
        dict[str, Any],
        Meta(description="`{chat_max_chars, chat_rate, chat_burst, max_frame_bytes}`"),
    ]


class Reply(Event, tag="reply"):
    """Answer to a client message that carried an `id`; result fields are merged in."""

    id: Annotated[int, Meta(description="the request id")]


class Error(Event, tag="error"):
    """A refused client message (or bad frame). `id` is the request id, or null."""

    id: Annotated[int | None, Meta(description="the request id or null")]
    code: Annotated[str, Meta(description="machine-readable code (table below)")]
    message: Annotated[str, Meta(description="human-readable text")]


class Batch(Event, tag="batch"):
    """Events of one batching window (~50 ms), in order. The only way events are delivered."""

    events: Annotated[list[Any], Meta(description="event objects, each with a `type`")]


class ChatEvent(Event, tag="chat"):
    """A danmaku. `id` is a Redis stream id `<ms>-<seq>`: increasing within a show."""

    id: Annotated[str, Meta(description="message id (monotonic within the show)")]
    uid: Annotated[str, Meta(description="sender user id")]
    name: Annotated[str, Meta(description="sender display name")]
    role: Annotated[str, Meta(description="host, moderator, viewer or cohost")]
    text: Annotated[str, Meta(description="the message")]
    ts: Annotated[int, Meta(description="server time, ms")]


class ChatDeleteEvent(Event, tag="chat.delete"):
    """A retracted message: remove it from the screen."""

    id: Annotated[str, Meta(description="message id")]


class ChatPinEvent(Event, tag="chat.pin"):
    """A pinned message (replaces any previous pin)."""

    id: Annotated[str, Meta(description="message id")]
    uid: Annotated[str, Meta(description="author user id")]
    name: Annotated[str, Meta(description="author name")]
    text: Annotated[str, Meta(description="text")]


class ChatUnpinEvent(Event, tag="chat.unpin"):
    """The pin was removed."""


class LikesEvent(Event, tag="likes"):
    """Running total of likes (sent at most every ~200 ms per node, never one frame per like)."""

    total: Annotated[int, Meta(description="total likes of the show")]


class PresenceEvent(Event, tag="presence"):
    """Viewer count, refreshed every ~2 s (only sent when it changed)."""

    viewers: Annotated[
        int,
        Meta(description="viewers' connections across all nodes (host and moderators not counted)"),
    ]
    peak: Annotated[int, Meta(description="peak concurrent viewers")]


class SkippedEvent(Event, tag="skipped"):
    """This connection was too slow: `count` chat messages were dropped just before this point."""

    count: Annotated[int, Meta(description="number of dropped chat events")]


class HistoryLostEvent(Event, tag="history_lost"):
    """Recovery failed: messages since the given id are no longer (all) in history."""

    reason: Annotated[
        str,
        Meta(
            description="`too_old` (messages after `since` were trimmed) or `epoch_changed` (history was reset)"
        ),
    ]
    since: Annotated[str, Meta(description="the id the client asked for")]
    epoch: Annotated[str, Meta(description="the current epoch")]
    first_id: Annotated[str, Meta(description='oldest id still in history ("0-0" if empty)')]


class ResyncEvent(Event, tag="resync"):
    """This node's event feed was cut (its Redis pub/sub connection dropped) and is back.

    Chat missed meanwhile comes first in the same or an earlier batch (or a `history_lost` when it
    is gone); then this snapshot, then the current state of the shop (`products`, one
    `sale.ended` for sales that ended in the last minute, `sale.countdown`/`sale.started` for the
    scheduled and live ones, a `lottery.created` per open giveaway). Replace what you show with it."""

    reason: Annotated[str, Meta(description="`pubsub_reconnect`")]
    show: Annotated[dict[str, Any], Meta(description="the show, as in `welcome`")]
    epoch: Annotated[str, Meta(description="the history epoch")]
    last_id: Annotated[str, Meta(description='newest chat id in history ("0-0" if none)')]
    likes: Annotated[int, Meta(description="total likes")]
    pinned: Annotated[dict[str, Any] | None, Meta(description="the pinned chat message or null")]


class UserMutedEvent(Event, tag="user.muted"):
    """A user was (un)muted: to the staff, and to that user (also on joining while muted)."""

    user_id: Annotated[str, Meta(description="the user")]
    until: Annotated[int, Meta(description="mute end, ms since epoch (0 = unmuted)")]
    seconds: Annotated[int, Meta(description="seconds of mute left (0 = unmuted)")]
    by: Annotated[str, Meta(description="staff user id (empty in the first batch after joining)")]


class UserBannedEvent(Event, tag="user.banned"):
    """Staff only: a user was banned (`banned` false: unbanned). Their connections close with 1008."""

    user_id: Annotated[str, Meta(description="the user")]
    banned: Annotated[bool, Meta(description="true: banned, false: unbanned")]
    by: Annotated[str, Meta(description="staff user id")]


class ShowLiveEvent(Event, tag="show.live"):
    """A publisher went live on WHIP: players start WHEP at once instead of polling."""


class ShowEndedEvent(Event, tag="show.ended"):
    """The publisher stopped: the show has ended."""

    replay_url: Annotated[
        str | None,
        Meta(description="the replay page (/replay/ID) once a published recording exists"),
    ] = None


SERVER_MESSAGES: tuple[type[Event], ...] = (Welcome, Reply, Error, Batch)
EVENTS: tuple[type[Event], ...] = (
    ChatEvent, ChatDeleteEvent, ChatPinEvent, ChatUnpinEvent, LikesEvent, PresenceEvent,
    SkippedEvent, HistoryLostEvent, ResyncEvent, UserMutedEvent, UserBannedEvent, ShowLiveEvent, ShowEndedEvent,
)  # fmt: skip

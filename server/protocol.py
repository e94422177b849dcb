"""The WebSocket protocol: one message schema, two wire codecs (`liveshop.json`, `liveshop.msgpack`).

Every frame carries exactly one message object with a `type`. The dataclasses below are the
schema: :func:`validate` checks client messages against them, and :func:`markdown` renders them
into `docs/protocol.md` (`python -m server.protocol` rewrites the generated section).
Server frames are encoded once per codec and reused for every viewer (:func:`ws_frame`).
"""

from __future__ import annotations

import json
import struct
import sys
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import msgpack

from .textrules import bad_text_field, frame_may_hold_surrogates

MAX_FRAME_BYTES = 64 * 1024
SUBPROTOCOL_JSON = "liveshop.json"
SUBPROTOCOL_MSGPACK = "liveshop.msgpack"
SUBPROTOCOLS = (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON)


class ProtocolError(Exception):
    """A client frame that breaks the protocol: answered with an `error` carrying `code`."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def _f(doc: str, default: Any = MISSING, **limits: Any) -> Any:
    """A schema field: its doc line, optional default, and limits (min/max for ints, max_len for str)."""
    meta = {"doc": doc, **limits}
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- client → server


@dataclass
class Chat:
    """Send a danmaku. Replied with `{msg_id, ts}`; the message itself arrives to everyone as a `chat` event."""

    TYPE: ClassVar[str] = "chat"
    text: str = _f("1..chat_max_chars (default 200) characters after trimming", max_len=4096)


@dataclass
class Like:
    """Hearts tapped since the last `like` (clients should group taps, e.g. every 200 ms). No reply fields."""

    TYPE: ClassVar[str] = "like"
    count: int = _f("taps, 1..50", 1, min=1, max=50)


@dataclass
class Ping:
    """Application-level ping. Replied with `{ts}` (server time, ms)."""

    TYPE: ClassVar[str] = "ping"


@dataclass
class ModDelete:
    """Staff: retract a chat message. Everyone receives `chat.delete`."""

    TYPE: ClassVar[str] = "mod.delete"
    message_id: str = _f("id of the chat message", max_len=64)


@dataclass
class ModMute:
    """Staff: mute a user for N minutes (their chat is refused with `muted`)."""

    TYPE: ClassVar[str] = "mod.mute"
    user_id: str = _f("user to mute", max_len=64)
    minutes: int = _f("1..1440", 10, min=1, max=1440)


@dataclass
class ModUnmute:
    """Staff: lift a mute."""

    TYPE: ClassVar[str] = "mod.unmute"
    user_id: str = _f("user to unmute", max_len=64)


@dataclass
class ModBan:
    """Staff: ban a user from the show: their connections close with 1008 and they cannot rejoin."""

    TYPE: ClassVar[str] = "mod.ban"
    user_id: str = _f("user to ban", max_len=64)


@dataclass
class ModUnban:
    """Staff: lift a ban."""

    TYPE: ClassVar[str] = "mod.unban"
    user_id: str = _f("user to unban", max_len=64)


@dataclass
class ModPin:
    """Staff: pin one chat message (replaces the previous pin). Everyone receives `chat.pin`."""

    TYPE: ClassVar[str] = "mod.pin"
    message_id: str = _f("id of the chat message", max_len=64)


@dataclass
class ModUnpin:
    """Staff: remove the pinned message. Everyone receives `chat.unpin`."""

    TYPE: ClassVar[str] = "mod.unpin"


CLIENT_MESSAGES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (Chat, Like, Ping, ModDelete, ModMute, ModUnmute, ModBan, ModUnban, ModPin, ModUnpin)
}
STAFF_MESSAGES = frozenset(t for t in CLIENT_MESSAGES if t.startswith("mod."))

# --------------------------------------------------------------------------- server → client


@dataclass
class Welcome:
    """First frame after connecting. Followed by one `batch` with recent or recovered chat."""

    TYPE: ClassVar[str] = "welcome"
    user: dict = _f("`{id, name, role}` of this connection")
    show: dict = _f("the show: `{id, title, host_name, status, created_at, live_since}`")
    epoch: str = _f("chat history epoch; pass it back with `since` to recover")
    last_id: str = _f('id of the newest chat message in history ("0-0" if none)')
    recovered: bool = _f("true when `since` was given and every missed message follows")
    viewers: int = _f("current viewers of the show (all nodes)")
    peak: int = _f("peak concurrent viewers")
    likes: int = _f("total likes")
    pinned: dict = _f("the pinned chat `{id, uid, name, text}` or null")
    codec: str = _f("the negotiated subprotocol")
    limits: dict = _f("`{chat_max_chars, chat_rate, chat_burst, max_frame_bytes}`")


@dataclass
class Reply:
    """Answer to a client message that carried an `id`; result fields are merged in."""

    TYPE: ClassVar[str] = "reply"
    id: int = _f("the request id")


@dataclass
class Error:
    """A refused client message (or bad frame). `id` is the request id, or null."""

    TYPE: ClassVar[str] = "error"
    id: int = _f("the request id or null")
    code: str = _f("machine-readable code (table below)")
    message: str = _f("human-readable text")


@dataclass
class Batch:
    """Events of one batching window (~50 ms), in order. The only way events are delivered."""

    TYPE: ClassVar[str] = "batch"
    events: list = _f("event objects, each with a `type`")


# --------------------------------------------------------------------------- events (inside a batch)


@dataclass
class ChatEvent:
    """A danmaku. `id` is a Redis stream id `<ms>-<seq>`: increasing within a show."""

    TYPE: ClassVar[str] = "chat"
    id: str = _f("message id (monotonic within the show)")
    uid: str = _f("sender user id")
    name: str = _f("sender display name")
    role: str = _f("host, moderator or viewer")
    text: str = _f("the message")
    ts: int = _f("server time, ms")


@dataclass
class ChatDeleteEvent:
    """A retracted message: remove it from the screen."""

    TYPE: ClassVar[str] = "chat.delete"
    id: str = _f("message id")


@dataclass
class ChatPinEvent:
    """A pinned message (replaces any previous pin)."""

    TYPE: ClassVar[str] = "chat.pin"
    id: str = _f("message id")
    uid: str = _f("author user id")
    name: str = _f("author name")
    text: str = _f("text")


@dataclass
class ChatUnpinEvent:
    """The pin was removed."""

    TYPE: ClassVar[str] = "chat.unpin"


@dataclass
class LikesEvent:
    """Running total of likes (sent at most every ~200 ms per node, never one frame per like)."""

    TYPE: ClassVar[str] = "likes"
    total: int = _f("total likes of the show")


@dataclass
class PresenceEvent:
    """Viewer count, refreshed every ~2 s (only sent when it changed)."""

    TYPE: ClassVar[str] = "presence"
    viewers: int = _f("current connections across all nodes")
    peak: int = _f("peak concurrent viewers")


@dataclass
class SkippedEvent:
    """This connection was too slow: `count` chat messages were dropped just before this point."""

    TYPE: ClassVar[str] = "skipped"
    count: int = _f("number of dropped chat events")


@dataclass
class HistoryLostEvent:
    """Recovery failed: messages since the given id are no longer (all) in history."""

    TYPE: ClassVar[str] = "history_lost"
    reason: str = _f(
        "`too_old` (messages after `since` were trimmed) or `epoch_changed` (history was reset)"
    )
    since: str = _f("the id the client asked for")
    epoch: str = _f("the current epoch")
    first_id: str = _f('oldest id still in history ("0-0" if empty)')


@dataclass
class ResyncEvent:
    """This node's event feed was cut (its Redis pub/sub connection dropped) and is back.

    Chat missed meanwhile comes first in the same or an earlier batch (or a `history_lost` when it
    is gone); then this snapshot, then the current state of the shop (`products`, one
    `sale.ended` for sales that ended in the last minute, `sale.countdown`/`sale.started` for the
    scheduled and live ones, a `lottery.created` per open giveaway). Replace what you show with it."""

    TYPE: ClassVar[str] = "resync"
    reason: str = _f("`pubsub_reconnect`")
    show: dict = _f("the show, as in `welcome`")
    epoch: str = _f("the history epoch")
    last_id: str = _f('newest chat id in history ("0-0" if none)')
    likes: int = _f("total likes")
    pinned: dict = _f("the pinned chat message or null")


@dataclass
class UserMutedEvent:
    """Staff only: a user was muted (or unmuted: `until` 0)."""

    TYPE: ClassVar[str] = "user.muted"
    user_id: str = _f("the user")
    until: int = _f("mute end, ms since epoch (0 = unmuted)")
    by: str = _f("staff user id")


@dataclass
class UserBannedEvent:
    """Staff only: a user was banned (`banned` false: unbanned). Their connections close with 1008."""

    TYPE: ClassVar[str] = "user.banned"
    user_id: str = _f("the user")
    banned: bool = _f("true: banned, false: unbanned")
    by: str = _f("staff user id")


@dataclass
class ShowLiveEvent:
    """A publisher went live on WHIP: players start WHEP at once instead of polling."""

    TYPE: ClassVar[str] = "show.live"


@dataclass
class ShowEndedEvent:
    """The publisher stopped: the show has ended."""

    TYPE: ClassVar[str] = "show.ended"
    replay_url: str | None = _f(
        "the replay page (/replay/ID) once a published recording exists", None
    )


# --------------------------------------------------------------------------- interactive commerce
# Commands registered in app[WS_HANDLERS] by server/commerce (auctions, group buys, polls); their
# handlers check them with validate_as. Staff-only commands answer `forbidden` to a viewer.


@dataclass
class PollCreate:
    """Staff: open a poll. Replied with `{poll}`; everyone receives `poll.created`."""

    TYPE: ClassVar[str] = "poll.create"
    question: str = _f("1..200 characters", max_len=200)
    options: list = _f("2..6 option labels (1..80 chars) or product ids of the show")
    duration_s: int = _f("5..3600", 60, min=5, max=3600)
    changeable: bool = _f("whether a vote may be changed until the close", False)


@dataclass
class PollVote:
    """Vote for one option. Replied with `{outcome, poll_id, option}`: `voted`, `changed`, `already_voted` (not changeable: `option` is your first vote), `closed`."""

    TYPE: ClassVar[str] = "poll.vote"
    poll_id: str = _f("the poll", max_len=80)
    option: int = _f("index of the option, 0-based", min=0, max=5)


@dataclass
class PollClose:
    """Staff: close a poll early. Replied with `{poll}` (results frozen)."""

    TYPE: ClassVar[str] = "poll.close"
    poll_id: str = _f("the poll", max_len=80)


@dataclass
class AuctionBid:
    """Bid. Replied with `{outcome, auction_id, price, leader_name, bids, ends_at}`; outcome `leading`, `outbid_by_higher` (accepted, but a proxy bid of the leader is higher), `too_low`, `ended`, `not_started`. The same `key` answers its first reply."""

    TYPE: ClassVar[str] = "auction.bid"
    auction_id: str = _f("the auction", max_len=80)
    amount: int = _f(
        "bid in minor units: at least the start price, then price + increment",
        min=1,
        max=10_000_000_000,
    )
    key: str = _f("idempotency key, 1-64 of A-Za-z0-9_.:-", max_len=64)
    max_amount: int = _f(
        "proxy bid: the server raises your bid by the increment up to this (≥ amount)",
        0,
        min=0,
        max=10_000_000_000,
    )


@dataclass
class AuctionEnd:
    """Staff: close an auction now (the leader, if over the reserve, wins). Replied with `{auction}`."""

    TYPE: ClassVar[str] = "auction.end"
    auction_id: str = _f("the auction", max_len=80)


@dataclass
class GroupJoin:
    """Join the open group of a deal (holds a unit). Replied with `{outcome, deal_id, group, joined, size, ends_at}`: `joined`, `formed` (you completed it: `reservation_id`), `already_joined`, `sold_out`, `ended`, `not_started`."""

    TYPE: ClassVar[str] = "group.join"
    deal_id: str = _f("the group-buy deal", max_len=80)


@dataclass
class GroupLeave:
    """Leave a group that has not formed yet (the held unit is released). Replied with `{outcome, deal_id}`: `left`, `not_joined`, `already_formed`."""

    TYPE: ClassVar[str] = "group.leave"
    deal_id: str = _f("the group-buy deal", max_len=80)


@dataclass
class GroupEnd:
    """Staff: end a deal now (an open group short of its size fails). Replied with `{deal}`."""

    TYPE: ClassVar[str] = "group.end"
    deal_id: str = _f("the group-buy deal", max_len=80)


COMMERCE_COMMANDS: tuple[type, ...] = (
    PollCreate, PollVote, PollClose, AuctionBid, AuctionEnd, GroupJoin, GroupLeave, GroupEnd,
)  # fmt: skip


@dataclass
class PollEvent:
    """`poll.created`, `poll.tally` (at most every 250 ms while votes change) and `poll.closed` (final, frozen)."""

    TYPE: ClassVar[str] = "poll.created | poll.tally | poll.closed"
    poll_id: str = _f("the poll")
    question: str = _f("the question (created, closed)")
    options: list = _f("[{label, product_id}] (created, closed)")
    tallies: list = _f("votes per option")
    total: int = _f("voters")
    ends_at: int = _f("close time (ms)")


@dataclass
class AuctionEvent:
    """`auction.started`, `auction.bid` (state after bids, at most every 100 ms) and `auction.ended` (`winner_name`, `winner_user_id`, `reservation_id`, `reserve_met`)."""

    TYPE: ClassVar[str] = "auction.started | auction.bid | auction.ended"
    auction_id: str = _f("the auction")
    price: int = _f("current price (minor units); start price before the first bid")
    leader_name: str = _f("display name of the leading bidder ('' before the first bid)")
    bids: int = _f("accepted bids")
    ends_at: int = _f("end time (ms), after every soft-close extension")


@dataclass
class GroupEvent:
    """`group.created` (the deal), `group.progress` ("2 of 3 joined", at most every 100 ms), `group.formed` (`members` [{user_id, name, reservation_id}]: pay now), `group.failed` (`members` [user ids]: units released), `group.ended`."""

    TYPE: ClassVar[str] = (
        "group.created | group.progress | group.formed | group.failed | group.ended"
    )
    deal_id: str = _f("the deal")
    group: int = _f("number of the group in the deal (1, 2, …)")
    joined: int = _f("members of the open group")
    size: int = _f("members needed")
    ends_at: int = _f("end of the open group's join window (ms)")
    left: int = _f("units of the deal not held")


COMMERCE_EVENTS: tuple[type, ...] = (PollEvent, AuctionEvent, GroupEvent)

SERVER_MESSAGES: tuple[type, ...] = (Welcome, Reply, Error, Batch)
EVENTS: tuple[type, ...] = (
    ChatEvent, ChatDeleteEvent, ChatPinEvent, ChatUnpinEvent, LikesEvent, PresenceEvent,
    SkippedEvent, HistoryLostEvent, ResyncEvent, UserMutedEvent, UserBannedEvent, ShowLiveEvent, ShowEndedEvent,
)  # fmt: skip

ERROR_CODES: dict[str, str] = {
    "bad_frame": "frame is not valid JSON/msgpack, or not an object",
    "bad_type": "`type` missing or not a string",
    "unknown_type": "no such message type",
    "bad_field": "a field is missing, of the wrong type or out of range (`field` names it)",
    "forbidden": "your role may not do this (e.g. a viewer calling `mod.*`); on connect: token for another show (close 4003)",
    "rate_limited": "too many chat messages; `retry_after_ms` says when to retry",
    "flood": "too many frames per second on this connection",
    "banned_word": "the chat text contains a banned word",
    "muted": "you are muted until `until` (ms)",
    "banned": "you are banned from this show",
    "not_found": "the message (or user) does not exist",
    "internal": "the server failed; the connection stays open",
    "unauthorized": "on connect: the token is missing or invalid (then close 4001)",
    "token_expired": "on connect: the token has expired (then close 4001)",
    "token_revoked": "the user's tokens were revoked (`POST /api/shows/{id}/revoke`): on connect, or sent to open connections before close 4001",
    "show_not_found": "on connect: no such show (then close 4004)",
}

CLOSE_CODES: dict[int, str] = {
    1000: "normal closure",
    1001: "server going away (shutdown/restart): reconnect with `since`",
    1002: "protocol error: a client frame that is not masked (RFC 6455 §5.1), or a malformed frame",
    1008: "policy violation: repeated bad input, or banned from the show",
    1009: "message over 64 KiB (65,536 bytes is allowed, 65,537 is not)",
    1011: "internal error while joining (retry with backoff)",
    1013: "try again later: the connection could not keep up (slow consumer)",
    4001: "bad, expired or revoked token (the upgrade succeeds, an `error` with code `unauthorized`/`token_expired`/`token_revoked` precedes the close)",
    4003: "token is for another show",
    4004: "no such show",
}


# --------------------------------------------------------------------------- validation


_HINTS: dict[type, dict[str, Any]] = {}
_PY_TYPES = {"str": str, "int": int, "bool": bool, "dict": dict, "list": list}


def _field_type(cls: type, name: str) -> type:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    kind = hints[name]
    return kind if isinstance(kind, type) else _PY_TYPES.get(str(kind), object)


def validate(message: dict[str, Any]) -> Any:
    """The schema object for a known client message, or ProtocolError (`bad_field`/`unknown_type`)."""
    cls = CLIENT_MESSAGES.get(message["type"])
    if cls is None:
        raise ProtocolError("unknown_type", f"unknown message type {message['type']!r}")
    return validate_as(cls, message)


def validate_as(cls: type, message: dict[str, Any]) -> Any:
    """``message`` checked against the schema dataclass ``cls`` (also commands registered elsewhere)."""
    values: dict[str, Any] = {}
    for spec in fields(cls):
        name = spec.name
        if name not in message or message[name] is None:
            if spec.default is MISSING:
                raise ProtocolError("bad_field", f"{name} is required", name)
            continue
        value = message[name]
        kind = _field_type(cls, name)
        if kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise ProtocolError("bad_field", f"{name} must be {kind.__name__}", name)
        meta = spec.metadata
        if kind is int and not (meta.get("min", value) <= value <= meta.get("max", value)):
            raise ProtocolError(
                "bad_field", f"{name} must be {meta.get('min')}..{meta.get('max')}", name
            )
        if kind is str:
            if len(value) > meta.get("max_len", MAX_FRAME_BYTES):
                raise ProtocolError("bad_field", f"{name} is too long", name)
        values[name] = value
    return cls(**values)


# --------------------------------------------------------------------------- codecs


class Codec:
    """One wire format: decodes client frames, encodes server messages (payload only)."""

    name: str = ""
    binary: bool = False

    def encode(self, message: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def frame(self, message: dict[str, Any]) -> bytes:
        """The complete WebSocket frame (header + payload) for `message`."""
        return ws_frame(self.encode(message), self.binary)


class JsonCodec(Codec):
    name = SUBPROTOCOL_JSON
    binary = False

    def encode(self, message: dict[str, Any]) -> bytes:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


class MsgpackCodec(Codec):
    name = SUBPROTOCOL_MSGPACK
    binary = True

    def encode(self, message: dict[str, Any]) -> bytes:
        return msgpack.packb(message, use_bin_type=True)


JSON = JsonCodec()
MSGPACK = MsgpackCodec()
CODECS: dict[str, Codec] = {JSON.name: JSON, MSGPACK.name: MSGPACK}


def decode(data: str | bytes) -> dict[str, Any]:
    """A client frame (text → JSON, binary → msgpack, whatever the subprotocol) as a message dict."""
    try:
        if isinstance(data, str):
            message = json.loads(data)
        else:
            message = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # every malformed-input exception of either decoder means the same thing
        raise ProtocolError("bad_frame", "frame is not a valid message") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_frame", "a message must be an object")
    if not isinstance(message.get("type"), str):
        raise ProtocolError("bad_type", "type must be a string")
    return message


def check_text(message: dict[str, Any], raw: str | bytes) -> None:
    """Every string in a decoded client message is valid Unicode: the rule HTTP bodies follow too
    (server.errors.read_json), checked for every message type, registered handlers included.
    ``raw`` is the frame it was decoded from (most frames cannot hold a surrogate: no walk)."""
    if not frame_may_hold_surrogates(raw):
        return
    bad = bad_text_field(message)
    if bad is not None:
        raise ProtocolError("bad_field", f"{bad} is not valid Unicode text", bad)


def request_id(message: dict[str, Any]) -> int | None:
    """The message's `id` if it is a plain integer (anything else is ignored)."""
    rid = message.get("id")
    return rid if isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) < 2**53 else None


def ws_frame(payload: bytes, binary: bool) -> bytes:
    """An unmasked, uncompressed, final WebSocket frame (RFC 6455 §5.2), built once and written to many."""
    first = 0x82 if binary else 0x81
    size = len(payload)
    if size < 126:
        header = bytes((first, size))
    elif size < 65536:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


# --------------------------------------------------------------------------- docs


def _type_name(cls: type, name: str) -> str:
    return _field_type(cls, name).__name__


def _table(cls: type) -> list[str]:
    rows = [f"### `{cls.TYPE}`", "", (cls.__doc__ or "").strip(), ""]  # type: ignore[attr-defined]
    specs = fields(cls)
    if specs:
        rows += ["| field | type | required | notes |", "|---|---|---|---|"]
        for spec in specs:
            required = "yes" if spec.default is MISSING else f"no (default {spec.default!r})"
            rows.append(
                f"| `{spec.name}` | {_type_name(cls, spec.name)} | {required} | {spec.metadata.get('doc', '')} |"
            )
        rows.append("")
    return rows


def markdown() -> str:
    """The generated reference section of docs/protocol.md."""
    out = ["## Client → server messages", ""]
    for cls in CLIENT_MESSAGES.values():
        out += _table(cls)
    out += ["## Server → client messages", ""]
    for cls in SERVER_MESSAGES:
        out += _table(cls)
    out += ["## Events (inside `batch`)", ""]
    for cls in EVENTS:
        out += _table(cls)
    out += ["## Interactive commerce commands (registered by server/commerce)", ""]
    for cls in COMMERCE_COMMANDS:
        out += _table(cls)
    out += ["## Interactive commerce events (inside `batch`)", ""]
    for cls in COMMERCE_EVENTS:
        out += _table(cls)
    out += ["## Error codes", "", "| code | meaning |", "|---|---|"]
    out += [f"| `{code}` | {text} |" for code, text in ERROR_CODES.items()]
    out += ["", "## Close codes", "", "| code | meaning |", "|---|---|"]
    out += [f"| {code} | {text} |" for code, text in CLOSE_CODES.items()]
    return "\n".join(out) + "\n"


BEGIN = "<!-- BEGIN GENERATED: python -m server.protocol -->"
END = "<!-- END GENERATED -->"


def write_docs(path: Path) -> None:
    """Replace the generated section of `path` with :func:`markdown`."""
    text = path.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n\n{markdown()}\n{END}{tail}")


if __name__ == "__main__":
    write_docs(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/protocol.md"))

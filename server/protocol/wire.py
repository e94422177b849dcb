"""The wire: two codecs (`liveshop.json`, `liveshop.msgpack`), frames, and the generic decode.

Every frame carries exactly one message object with a `type`. Server frames are encoded once per
codec and reused for every viewer (:func:`ws_frame`). Client frames are decoded by the command
registry (:mod:`.registry`) straight into their schema; :func:`decode` is the generic decode it
falls back to, to say precisely what is wrong with a frame that does not fit.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import msgpack

from ..errors import ApiError, Code
from ..textrules import bad_text_field, frame_may_hold_surrogates

MAX_FRAME_BYTES = 64 * 1024
SUBPROTOCOL_JSON = "liveshop.json"
SUBPROTOCOL_MSGPACK = "liveshop.msgpack"
SUBPROTOCOLS = (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON)


class ProtocolError(ApiError):
    """A client frame that breaks the protocol: answered with an `error` carrying `code`."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        if field is None:
            super().__init__(400, code, message)
        else:
            super().__init__(400, code, message, field=field)
        self.field = field


class Codec:
    """One wire format: encodes server messages (payload only)."""

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
        raise ProtocolError(Code.BAD_FRAME, "frame is not a valid message") from None
    if not isinstance(message, dict):
        raise ProtocolError(Code.BAD_FRAME, "a message must be an object")
    if not isinstance(message.get("type"), str):
        raise ProtocolError(Code.BAD_TYPE, "type must be a string")
    return message


def check_text(message: dict[str, Any], raw: str | bytes) -> None:
    """Every string in a decoded client message is valid Unicode: the rule HTTP bodies follow too
    (server.errors.read_json), checked for every message type, registered handlers included.
    ``raw`` is the frame it was decoded from (most frames cannot hold a surrogate: no walk)."""
    if not frame_may_hold_surrogates(raw):
        return
    bad = bad_text_field(message)
    if bad is not None:
        raise ProtocolError(Code.BAD_FIELD, f"{bad} is not valid Unicode text", bad)


def request_id(value: Any) -> int | None:
    """A message's `id` if it is a plain integer (anything else is ignored)."""
    return value if type(value) is int and abs(value) < 2**53 else None


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

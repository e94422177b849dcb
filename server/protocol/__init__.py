"""The WebSocket protocol: one registry of commands and events, two wire codecs, generated docs.

- :mod:`.wire`: the codecs (``liveshop.json``, ``liveshop.msgpack``), frames, the generic decode;
- :mod:`.registry`: :class:`Command` (schema, handler, roles, docs) and the app's
  :class:`Registry`, which parses each client frame with one msgspec decoder per codec;
- :mod:`.messages`: the gateway's server → client messages and the real-time events;
- :mod:`.docs`: docs/protocol.md's reference section (``python -m server.protocol``).

Commands live beside their handlers (``server/realtime/chat.py``, ``server/commerce/polls.py``, …) and
are added by each part's ``setup(app)`` with :func:`register`.
"""

from .registry import (
    ANYONE,
    STAFF,
    VIEWERS,
    Command,
    Event,
    Message,
    Registry,
    Rejected,
    register,
    type_of,
)
from .wire import (
    CODECS,
    JSON,
    MAX_FRAME_BYTES,
    MSGPACK,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    SUBPROTOCOLS,
    Codec,
    JsonCodec,
    MsgpackCodec,
    ProtocolError,
    check_text,
    decode,
    request_id,
    ws_frame,
)

__all__ = [
    "ANYONE", "CODECS", "JSON", "MAX_FRAME_BYTES", "MSGPACK", "STAFF", "SUBPROTOCOLS",
    "SUBPROTOCOL_JSON", "SUBPROTOCOL_MSGPACK", "VIEWERS", "Codec", "Command", "Event",
    "JsonCodec", "Message", "MsgpackCodec", "ProtocolError", "Registry", "Rejected",
    "check_text", "decode", "register", "request_id", "type_of", "ws_frame",
]  # fmt: skip

"""A lean WebSocket client (RFC 6455) as an asyncio Protocol, for thousands of viewers per process.

Profiling the chat scenario showed the tester paying ≈ 30 µs per received frame with
aiohttp's client (C frame parser, but one task wake-up and a Python ``receive()`` per frame).
Here frames are parsed in ``data_received`` and handed to a callback directly: no task per
connection, no future per frame. It speaks exactly what liveshop needs — ``ws://`` only,
binary/text frames, fragmentation, ping → pong, close handshake — and the same
``liveshop.msgpack`` envelope as :class:`loadtest.client.ShowSocket`, whose interface it shares.
``--ws-client aiohttp`` (or a ``https`` URL) uses aiohttp instead.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import struct
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import quote, urlparse

import msgpack

from .client import SUBPROTOCOL, ApiError

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking ``key`` (RFC 6455 §5.3), as one big-int operation."""
    n = len(payload)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    return header + key + mask(payload, key)


class _Protocol(asyncio.Protocol):
    """Handshake, frame parsing and control frames for one connection."""

    def __init__(
        self, request: bytes, accept: str, on_message: Callable[[int, bytes], None]
    ) -> None:
        self.request = request
        self.accept = accept
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self._open = False
        self._close_sent = False
        self._fragments: list[bytes] = []
        self._fragment_op = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(
            asyncio.Transport, transport
        )  # uvloop's transports are not subclasses
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self._open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            status_line, *lines = head.split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)
            }
            if (
                " 101 " not in status_line + " "
                or headers.get("sec-websocket-accept") != self.accept
            ):
                if not self.handshake.done():
                    self.handshake.set_exception(
                        ApiError(0, {"error": {"code": f"upgrade_{status_line[9:12]}"}})
                    )
                self._abort()
                return
            self._open = True
            if not self.handshake.done():
                self.handshake.set_result(headers.get("sec-websocket-protocol", ""))
        self._parse()

    def _parse(self) -> None:
        buf = self.buffer
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 10
            if b1 & 0x80:  # a server must not mask; tolerate it anyway
                header += 4
            if size - pos < header + length:
                break
            payload = bytes(buf[pos + header : pos + header + length])
            if b1 & 0x80:
                payload = mask(payload, bytes(buf[pos + header - 4 : pos + header]))
            pos += header + length
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
        if pos:
            del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY):
            if fin:
                self.on_message(opcode, payload)
            else:
                self._fragment_op, self._fragments = opcode, [payload]
        elif opcode == OP_CONT:
            self._fragments.append(payload)
            if fin:
                self.on_message(self._fragment_op, b"".join(self._fragments))
                self._fragments = []
        elif opcode == OP_PING:
            self.send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self._close_sent:
                self.send(OP_CLOSE, payload[:2])
            self._abort()

    def send(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_CLOSE:
            self._close_sent = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(opcode, payload))

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = 1006
        if not self.handshake.done():
            self.handshake.set_exception(ApiError(0, {"error": {"code": "closed_1006"}}))
        if not self.closed.done():
            self.closed.set_result(None)


class LeanShowSocket:
    """The ``ShowSocket`` interface over :class:`_Protocol`: welcome, requests by id, batched events."""

    def __init__(
        self,
        base_url: str,
        show_id: str,
        token: str,
        on_events: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        url = urlparse(base_url)
        if url.scheme != "http":
            raise ValueError("the lean client speaks ws:// only")
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.path = f"/ws/{quote(show_id)}?token={quote(token)}"
        self.token = token
        self.on_events = on_events
        self.welcome: dict[str, Any] = {}
        self.unsolicited_errors: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._protocol: _Protocol | None = None
        self._welcome: asyncio.Future[dict[str, Any]] | None = None

    async def connect(self, wait_s: float = 30.0) -> dict[str, Any]:
        """Upgrade, then wait for ``welcome``; raises ApiError (status 0, a code) on refusal."""
        key = base64.b64encode(os.urandom(16)).decode()
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        self._welcome = loop.create_future()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Protocol(request, accept, self._on_message), self.host, self.port
                ),
                wait_s,
            )
        except OSError as exc:
            raise ApiError(0, {"error": {"code": f"connect_{type(exc).__name__}"}}) from None
        self._protocol = protocol
        try:
            await asyncio.wait_for(protocol.handshake, wait_s)
            self.welcome = await asyncio.wait_for(asyncio.shield(self._welcome), wait_s)
        except BaseException:
            protocol._abort()
            raise
        protocol.closed.add_done_callback(self._fail_pending)
        return self.welcome

    def _on_message(self, opcode: int, payload: bytes) -> None:
        frame = msgpack.unpackb(payload, raw=False) if opcode == OP_BINARY else json.loads(payload)
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "batch":
            if self.on_events:
                self.on_events(frame.get("events") or [])
        elif kind in ("reply", "error"):
            request_id = frame.get("id")
            fut = self._pending.pop(request_id, None) if request_id is not None else None
            if fut is not None and not fut.done():
                fut.set_result(frame)
            elif kind == "error":
                if self._welcome is not None and not self._welcome.done():
                    self._welcome.set_exception(ApiError(0, {"error": {"code": frame.get("code")}}))
                else:
                    self.unsolicited_errors.append(frame)
        elif kind == "welcome" and self._welcome is not None and not self._welcome.done():
            self._welcome.set_result(frame)

    def _fail_pending(self, _: Any = None) -> None:
        code = self.close_code
        if self._welcome is not None and not self._welcome.done():
            self._welcome.set_exception(ApiError(0, {"error": {"code": f"closed_{code}"}}))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result({"type": "error", "code": "closed", "message": f"closed {code}"})
        self._pending.clear()

    @property
    def reader(self) -> asyncio.Future[None] | None:
        """Done when the connection has closed."""
        return self._protocol.closed if self._protocol else None

    @property
    def closed(self) -> bool:
        return self._protocol is None or self._protocol.closed.done()

    @property
    def close_code(self) -> int | None:
        return self._protocol.close_code if self._protocol else None

    async def send(self, kind: str, **fields: Any) -> None:
        """Fire and forget (no id: no reply; errors still arrive)."""
        assert self._protocol is not None
        self._protocol.send(OP_BINARY, msgpack.packb({"type": kind, **fields}))

    def request_nowait(self, kind: str, **fields: Any) -> asyncio.Future[dict[str, Any]]:
        """Send with an id; the future resolves to the ``reply`` or ``error`` frame."""
        assert self._protocol is not None
        request_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_result({"type": "error", "code": "closed", "message": "connection closed"})
            return fut
        self._pending[request_id] = fut
        self._protocol.send(OP_BINARY, msgpack.packb({"type": kind, "id": request_id, **fields}))
        return fut

    async def request(self, kind: str, wait_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send with an id and wait for its reply or error frame."""
        try:
            return await asyncio.wait_for(self.request_nowait(kind, **fields), wait_s)
        except TimeoutError:
            return {"type": "error", "code": "timeout", "message": f"no answer in {wait_s} s"}

    async def close(self) -> None:
        """Close handshake (1000), then drop the connection after at most 2 s."""
        protocol = self._protocol
        if protocol is None or protocol.closed.done():
            return
        protocol.send(OP_CLOSE, struct.pack("!H", 1000))
        try:
            await asyncio.wait_for(asyncio.shield(protocol.closed), 2)
        except TimeoutError:
            protocol._abort()

"""RFC 6455 §5.1 for aiohttp's server: a client frame that is not masked closes the socket with 1002.

aiohttp's frame parser unmasks a masked frame and silently accepts an unmasked one (it has no
option to refuse them). Masking is what keeps a browser's WebSocket from being used to poison
intermediaries' caches, so the RFC says a server MUST close on an unmasked client frame.
:class:`GuardedWebSocketResponse` puts :class:`MaskGuard` in front of aiohttp's parser: it follows
the frame boundaries of the raw byte stream (2-14 header bytes per frame, the payload skipped
without copying) and fails the connection the way aiohttp's own parser fails it on a protocol
error — a ``WebSocketError(1002)`` on the message queue, which ``receive()`` answers with a close
frame carrying 1002.

This is the only module that touches aiohttp's private WebSocket internals
(``WebSocketResponse._post_start``/``_reader``, ``RequestHandler._payload_parser``/
``_message_tail``); tests/realtime/test_ws_frames.py pins the behaviour on each upgrade.
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSCloseCode, web
from aiohttp.helpers import set_exception
from aiohttp.http_websocket import WebSocketError


class MaskGuard:
    """Checks the mask bit of every client frame header, then hands the bytes to aiohttp's parser."""

    __slots__ = ("parser", "response", "head", "need", "skip", "failed")

    def __init__(self, parser: Any, response: web.WebSocketResponse) -> None:
        self.parser = parser
        self.response = response
        self.head = b""  # the header bytes of the current frame read so far
        self.need = 2  # header bytes needed: 2, then 2 + extended length + 4 once known
        self.skip = 0  # payload bytes of the current frame still to pass
        self.failed = False

    def feed_eof(self) -> None:
        self.parser.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.failed:
            return False, b""
        bad_at = self._scan(data)
        if bad_at < 0:
            return self.parser.feed_data(data)  # type: ignore[no-any-return]
        self.failed = True
        if bad_at:  # the good frames before the bad one are still delivered, in order
            self.parser.feed_data(data[:bad_at])
        queue = self.response._reader
        if queue is not None:
            error = WebSocketError(WSCloseCode.PROTOCOL_ERROR, "client frame is not masked")
            set_exception(queue, error)
        return False, b""

    def _scan(self, data: bytes) -> int:
        """Advance over ``data``: -1 if all is well, else where the first unmasked frame starts."""
        pos, size = 0, len(data)
        while pos < size:
            if not self.skip and not self.head and size - pos >= 14:
                # Fast path: the whole header is in this read (the usual case).
                second = data[pos + 1]
                if not second & 0x80:
                    return pos
                flag = second & 0x7F
                if flag < 126:
                    pos += 6 + flag
                elif flag == 126:
                    pos += 8 + ((data[pos + 2] << 8) | data[pos + 3])
                else:
                    pos += 14 + int.from_bytes(data[pos + 2 : pos + 10], "big")
                if pos > size:  # the payload goes on in the next reads
                    self.skip = pos - size
                continue
            if self.skip:
                step = min(self.skip, size - pos)
                self.skip -= step
                pos += step
                continue
            take = self.need - len(self.head)
            self.head += data[pos : pos + take]
            pos = min(pos + take, size)
            if len(self.head) < self.need:
                return -1
            flag = self.head[1] & 0x7F
            if self.need == 2:
                if not self.head[1] & 0x80:
                    return max(0, pos - 2)
                self.need = 2 + (2 if flag == 126 else 8 if flag == 127 else 0) + 4
                if len(self.head) < self.need:
                    continue
            if flag == 126:
                self.skip = int.from_bytes(self.head[2:4], "big")
            elif flag == 127:
                self.skip = int.from_bytes(self.head[2:10], "big")
            else:
                self.skip = flag
            self.head, self.need = b"", 2
        return -1


class GuardedWebSocketResponse(web.WebSocketResponse):
    """A WebSocketResponse whose incoming frames pass :class:`MaskGuard` first."""

    def _post_start(self, request: web.BaseRequest, protocol: Any, writer: Any) -> None:
        handler: Any = request.protocol
        # Bytes that came with the upgrade request go to the parser inside super()._post_start:
        # hold them back so the guard sees the stream from its first byte.
        tail, handler._message_tail = handler._message_tail, b""
        super()._post_start(request, protocol, writer)
        guard = MaskGuard(handler._payload_parser, self)
        handler._payload_parser = guard
        if tail:
            guard.feed_data(tail)

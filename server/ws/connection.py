"""One viewer's WebSocket as the hub sees it: a bounded send queue over pre-built frames.

Frames are written straight to the transport (they are encoded once per batch and shared by every
viewer with the same codec and audience). While the transport's buffer is above
:data:`HIGH_WATER` the connection is *backlogged*: batches queue up; past :data:`MAX_BACKLOG`
the oldest droppable chat is dropped (and a ``skipped`` event tells how many); a connection that
makes no progress for :data:`STUCK_S`, or whose undroppable backlog passes :data:`HARD_BACKLOG`,
is closed with 1013.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..auth import Claims
from ..protocol import Codec
from .metrics import WS_DROPPED, WS_EVENTS_OUT, WS_FRAMES_OUT, WS_SLOW_CLOSED

log = logging.getLogger("liveshop.ws")

HIGH_WATER = 256 * 1024
MAX_BACKLOG = 16
HARD_BACKLOG = 512
STUCK_S = 8.0
CLOSE_WAIT_S = 5.0  # for the peer's close reply before the TCP connection is dropped


class Batch:
    """Events of one window, with their frames built lazily once per (codec, audience, essential)."""

    __slots__ = ("items", "received", "_frames", "_counts")

    def __init__(self, items: list[tuple[dict[str, Any], bool, bool]], received: float) -> None:
        self.items = items  # (event, droppable, staff_only)
        self.received = received
        self._frames: dict[tuple[str, bool, bool], bytes | None] = {}
        self._counts: dict[tuple[bool, bool], int] = {}

    def events(self, staff: bool, essential: bool) -> list[dict[str, Any]]:
        return [e for e, d, s in self.items if (staff or not s) and not (essential and d)]

    def frame(self, codec: Codec, staff: bool, essential: bool = False) -> bytes | None:
        """The encoded ``batch`` frame for this audience; None when it would be empty."""
        key = (codec.name, staff, essential)
        try:
            return self._frames[key]
        except KeyError:
            events = self.events(staff, essential)
            frame = codec.frame({"type": "batch", "events": events}) if events else None
            self._frames[key] = frame
            self._counts[(staff, essential)] = len(events)
            return frame

    def count(self, staff: bool, essential: bool = False) -> int:
        """Events the audience receives (after :meth:`frame` built it)."""
        return self._counts.get((staff, essential), 0)

    def droppable(self, staff: bool) -> int:
        return sum(1 for _, d, s in self.items if d and (staff or not s))


class _Queued:
    __slots__ = ("frame", "batch", "essential")

    def __init__(self, frame: bytes | None = None, batch: Batch | None = None) -> None:
        self.frame = frame
        self.batch = batch
        self.essential = False


class Connection:
    """A live WebSocket: its claims, codec, and bounded send queue."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        codec: Codec,
        claims: Claims,
        on_backlog: Callable[[Connection], None] | None = None,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.codec = codec
        self.claims = claims
        self.staff = claims.is_staff
        self.user_id = claims.user_id
        self.backlog: deque[_Queued] = deque()
        self.skipped = 0
        self.last_progress = time.monotonic()
        self.closing = False
        self.live = False  # until the welcome is written, batches wait in ``held``
        self.held: list[Batch] = []
        self.floor: tuple[int, int] | None = None  # chat ids up to this were sent in history
        self.on_backlog = on_backlog
        self.close_task: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- writing

    def _writable(self) -> bool:
        return (
            not self.transport.is_closing() and self.transport.get_write_buffer_size() < HIGH_WATER
        )

    def _write(self, frame: bytes, events: int = 1) -> None:
        self.transport.write(frame)
        self.last_progress = time.monotonic()
        WS_FRAMES_OUT.inc()
        WS_EVENTS_OUT.inc(events)

    def send_message(self, message: dict[str, Any]) -> None:
        """Queue one message (reply, error, welcome): never dropped, kept in order with batches."""
        self.send_frame(self.codec.frame(message))

    def send_frame(self, frame: bytes) -> None:
        if self.closing:
            return
        if not self.backlog and not self.skipped and self._writable():
            self._write(frame)
            return
        self.backlog.append(_Queued(frame=frame))
        self._after_queue()

    def deliver(self, batch: Batch) -> int:
        """Hand a hub batch to this connection; returns the events written now (the caller counts
        them). The fan-out fast path is one ``transport.write`` of a shared, pre-built frame."""
        if self.closing:
            return 0
        if not self.live:
            self.held.append(batch)
            return 0
        if self.floor is not None:
            batch = self._past_floor(batch)
        transport = self.transport
        if (
            not self.backlog and not self.skipped
            and transport.get_write_buffer_size() < HIGH_WATER and not transport.is_closing()
        ):  # fmt: skip
            frame = batch.frame(self.codec, self.staff)
            if frame is None:
                return 0
            transport.write(frame)
            return batch.count(self.staff)
        self.backlog.append(_Queued(batch=batch))
        self._after_queue()
        return 0

    def _after_queue(self) -> None:
        if len(self.backlog) == 1:
            self.last_progress = time.monotonic()  # stuck time counts from entering the backlog
        self._trim()
        if not self.flush() and self.on_backlog is not None:
            self.on_backlog(self)

    def _trim(self) -> None:
        """Keep the backlog bounded: only the newest MAX_BACKLOG batches keep their droppable chat;
        older ones are degraded to their undroppable events (dropped entirely if none are left)."""
        full = [i for i in self.backlog if i.batch is not None and not i.essential]
        excess = len(full) - MAX_BACKLOG
        if excess > 0:
            for item in full[:excess]:
                assert item.batch is not None
                item.essential = True
                dropped = item.batch.droppable(self.staff)
                self.skipped += dropped
                WS_DROPPED.inc(dropped)
            self.backlog = deque(
                i for i in self.backlog
                if i.batch is None or not i.essential or i.batch.frame(self.codec, self.staff, True) is not None
            )  # fmt: skip
        if len(self.backlog) > HARD_BACKLOG:
            self.close_slow("send backlog full")

    def flush(self) -> bool:
        """Write what the transport accepts now; True when nothing is left queued."""
        while self._writable() and (self.backlog or self.skipped):
            if self.skipped:
                notice = self.codec.frame(
                    {"type": "batch", "events": [{"type": "skipped", "count": self.skipped}]}
                )
                self.skipped = 0
                self._write(notice)
                continue
            item = self.backlog.popleft()
            if item.frame is not None:
                self._write(item.frame)
            elif item.batch is not None:
                frame = item.batch.frame(self.codec, self.staff, item.essential)
                if frame is not None:
                    self._write(frame, item.batch.count(self.staff, item.essential))
        if self.transport.is_closing():
            self.backlog.clear()
            return True
        return not self.backlog and not self.skipped

    def check_stuck(self, now: float) -> None:
        if (self.backlog or self.skipped) and now - self.last_progress > STUCK_S:
            self.close_slow("no progress")

    # ----------------------------------------------------------------- state

    def go_live(self, after_id: tuple[int, int] | None) -> None:
        """Start live delivery after the welcome: write the batches held meanwhile. Chat up to
        ``after_id`` was already sent in the first batch; pub/sub may still bring it (it was
        published before the history read), so it is skipped until a newer chat id shows up."""
        held, self.held = self.held, []
        self.live = True
        self.floor = after_id
        for batch in held:
            self.deliver(batch)

    def _past_floor(self, batch: Batch) -> Batch:
        from ..realtime.chat import parse_id

        assert self.floor is not None
        keep: list[tuple[dict[str, Any], bool, bool]] = []
        for item in batch.items:
            event = item[0]
            if (
                self.floor is not None
                and event.get("type") == "chat"
                and isinstance(event.get("id"), str)
            ):
                try:
                    seen = parse_id(event["id"]) <= self.floor
                except ValueError:  # not a stream id: not ours to deduplicate
                    seen = False
                else:
                    if not seen:
                        self.floor = None  # ids only grow: nothing older can follow
                if seen:
                    continue
            keep.append(item)
        return Batch(keep, batch.received) if len(keep) != len(batch.items) else batch

    def close(self, code: int, message: str) -> None:
        """Close from any context (the WebSocket close handshake runs in its own task)."""
        if self.closing:
            return
        self.closing = True
        self.backlog.clear()
        self.close_task = asyncio.get_running_loop().create_task(self._close(code, message))

    def close_slow(self, why: str) -> None:
        if not self.closing:
            WS_SLOW_CLOSED.inc()
            log.info("closing slow connection", extra={"user": self.user_id, "why": why})
        self.close(1013, "too slow: " + why)

    async def _close(self, code: int, message: str) -> None:
        try:
            await asyncio.wait_for(
                self.ws.close(code=code, message=message.encode()[:120]), timeout=CLOSE_WAIT_S
            )
        except Exception:
            # A peer that reads nothing never lets the close frame out: drop the TCP connection.
            self.transport.abort()

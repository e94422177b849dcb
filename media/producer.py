"""Producer: one published track. Receives RTP (never decoded) and fans it out.

Per packet, once per stream: history (for NACK, RFC 4585 §6.2.1), GOP cache (instant
join), then each consumer rewrites only SSRC/sequence/timestamp and sends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc import RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import AnyRtcpPacket, RtcpSrPacket, RtpPacket

from . import fastpath, metrics
from .aiortc_internals import request_keyframe, tap_receiver
from .consumer import LIVE
from .gop_cache import GopCache
from .packet_history import PacketHistory

if TYPE_CHECKING:
    from .consumer import Consumer

log = logging.getLogger("liveshop.media.producer")

PLI_INTERVAL_S = 1.0  # at most one PLI per second per stream, however many viewers ask
LATENCY_SAMPLE_EVERY = 16
_native_fan_out = fastpath.fan_out()


class Producer:
    """A published audio or video track of one show."""

    def __init__(
        self,
        show_id: str,
        kind: str,
        codec: RTCRtpCodecParameters,
        receiver: RTCRtpReceiver | None,
        gop_max_packets: int = 6000,
        upstream_keyframe: Callable[[], None] | None = None,
    ) -> None:
        self.show_id = show_id
        self.kind = kind
        self.codec = codec
        self.receiver = receiver
        self.history = PacketHistory(1024 if kind == "video" else 256)
        self.gop: GopCache | None = (
            GopCache(codec.mimeType, gop_max_packets) if kind == "video" else None
        )
        self.consumers: list[Consumer] = []
        self.waiting: list[Consumer] = []
        self.media_ssrc: int | None = None
        self.last_seq: int | None = None
        self.last_ts: int | None = None
        self.sr: tuple[int, int, float] | None = None  # (NTP, RTP timestamp, local wall time)
        self.packets_received = 0
        self.pli_sent = 0
        self.pli_throttled = 0
        self.closed = False
        self._last_pli = -1e9
        self._reported = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.first_packet = asyncio.get_event_loop().create_future()
        # An edge's producer has no receiver: RTP comes through a pipe, PLI goes back up it.
        self.upstream_keyframe = upstream_keyframe
        if receiver is not None:
            tap_receiver(receiver, self._on_rtp, self._on_rtcp)

    # ------------------------------------------------------------------ hot path
    def _on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters | None = None) -> None:
        if self.closed:
            return
        self.packets_received += 1
        sample = self.packets_received % LATENCY_SAMPLE_EVERY == 0
        if sample:
            t0 = time.perf_counter()
        self.media_ssrc = packet.ssrc
        self.last_seq = packet.sequence_number
        self.last_ts = packet.timestamp
        self.history.put(packet)
        started = self.gop is not None and self.gop.add(packet)
        self._fan_out(packet)
        if started and self.waiting:
            snapshot = self.gop.snapshot()  # type: ignore[union-attr]
            waiting, self.waiting = self.waiting, []
            for consumer in waiting:
                consumer.catch_up(snapshot)
        if sample:
            metrics.FORWARD_LATENCY.labels(self.show_id).observe(time.perf_counter() - t0)
        if not self.first_packet.done():
            self.first_packet.set_result(None)

    def _fan_out(self, packet: RtpPacket) -> None:
        """Every consumer gets ``packet``: live ones with a C writer in one call into
        media._fastpath (no interpreter per viewer), the rest through ``Consumer.forward``."""
        try:
            rest = _native_fan_out(self.consumers, packet, LIVE)
        except Exception:
            log.exception("fast-path fan-out failed")
            return
        for consumer in rest:
            try:
                consumer.forward(packet)
            except Exception:  # one broken viewer must not stop the others
                log.exception("forward failed")

    def _on_rtcp(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            self.sr = (info.ntp_timestamp, info.rtp_timestamp, time.time())

    # ------------------------------------------------------------------ consumers
    def add_consumer(self, consumer: Consumer) -> None:
        """Start a consumer: video from the cached keyframe at once, else after a PLI."""
        if self.gop is None:
            consumer.sync_next()
        else:
            snapshot = self.gop.snapshot()
            if snapshot:
                metrics.GOP_JOINS.labels(self.show_id).inc()
                consumer.catch_up(snapshot)
            else:
                consumer.wait_keyframe()
                self.waiting.append(consumer)
                self.request_keyframe()
        self.consumers.append(consumer)

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        if consumer in self.waiting:
            self.waiting.remove(consumer)

    def request_keyframe(self) -> bool:
        """Send a PLI to the publisher, throttled to one per ``PLI_INTERVAL_S``."""
        now = time.monotonic()
        if now - self._last_pli < PLI_INTERVAL_S or self.closed:
            self.pli_throttled += 1
            metrics.PLI_THROTTLED.labels(self.show_id).inc()
            return False
        self._last_pli = now
        self.pli_sent += 1
        metrics.PLI_SENT.labels(self.show_id).inc()
        ssrc = self.media_ssrc
        if self.upstream_keyframe is not None:
            self.upstream_keyframe()
        elif ssrc is not None:
            task = asyncio.ensure_future(self._send_pli(ssrc))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def _send_pli(self, ssrc: int) -> None:
        try:
            assert self.receiver is not None
            await request_keyframe(self.receiver, ssrc)
        except ConnectionError:
            pass

    def report(self) -> None:
        """Publish counters accumulated since the last call."""
        delta = self.packets_received - self._reported
        self._reported = self.packets_received
        if delta:
            metrics.PACKETS_RECEIVED.labels(self.show_id, self.kind).inc(delta)

    def close(self) -> None:
        self.closed = True
        for task in self._tasks:
            task.cancel()
        self.consumers.clear()
        self.waiting.clear()
        if self.gop is not None:
            self.gop.invalidate()

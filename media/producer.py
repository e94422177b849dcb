"""Producer: one published track. Receives RTP (never decoded) and fans it out.

Per packet, once per stream: history (for NACK, RFC 4585 §6.2.1), GOP cache (instant
join), then each sink's ``forward`` (a viewer's consumer rewrites only SSRC/sequence/timestamp
and sends; a pipe writes it once to an edge). Which sinks hang here is the Router's business
(:mod:`media.sink`); this module knows only the :class:`~media.sink.Sink` protocol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import AnyRtcpPacket, RtcpSrPacket, RtpPacket

from . import fastpath, metrics
from .aiortc_internals import request_keyframe, tap_receiver
from .gop_cache import GopCache
from .packet_history import PacketHistory
from .sink import ConsumerState, Joiner, Sink

log = logging.getLogger("liveshop.media.producer")

PLI_INTERVAL_S = 1.0  # at most one PLI per second per stream, however many viewers ask
LATENCY_SAMPLE_EVERY = 16
_native_fan_out = fastpath.fan_out()
LIVE = ConsumerState.LIVE  # the C fan-out takes a sink in this state with a C writer natively


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
        self.sinks: list[Sink] = []  # the hot loop: every packet goes to each of these
        self.waiting: list[Joiner] = []  # joiners that start at the next keyframe
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
            for joiner in waiting:
                joiner.catch_up(snapshot)
        if sample:
            metrics.FORWARD_LATENCY.labels(self.show_id).observe(time.perf_counter() - t0)
        if not self.first_packet.done():
            self.first_packet.set_result(None)

    def _fan_out(self, packet: RtpPacket) -> None:
        """Every sink gets ``packet``: live consumers with a C writer in one call into
        media._fastpath (no interpreter per viewer), the rest (pipes, recorder, packagers,
        consumers not live yet) through their ``forward``."""
        try:
            rest = _native_fan_out(self.sinks, packet, LIVE)
        except Exception:
            log.exception("fast-path fan-out failed")
            return
        for sink in rest:
            try:
                sink.forward(packet)
            except Exception:  # one broken viewer must not stop the others
                log.exception("forward failed")

    def _on_rtcp(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            self.sr = (info.ntp_timestamp, info.rtp_timestamp, time.time())

    # ------------------------------------------------------------------ sinks
    def add_sink(self, sink: Sink) -> None:
        """Every packet from now on goes to ``sink`` as well."""
        self.sinks.append(sink)

    def add_joiner(self, joiner: Joiner) -> None:
        """Start a joiner: video from the cached keyframe at once, else after a PLI."""
        if self.gop is None:
            joiner.sync_next()
        else:
            snapshot = self.gop.snapshot()
            if snapshot:
                metrics.GOP_JOINS.labels(self.show_id).inc()
                joiner.catch_up(snapshot)
            else:
                joiner.wait_keyframe()
                self.waiting.append(joiner)
                self.request_keyframe()
        self.sinks.append(joiner)

    def remove_sink(self, sink: Sink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
        if sink in self.waiting:
            self.waiting.remove(sink)  # type: ignore[arg-type]

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
        if self.closed:
            return
        self.closed = True
        for task in self._tasks:
            task.cancel()
        sinks, self.sinks = self.sinks, []
        self.waiting.clear()
        for sink in sinks:
            closed = getattr(sink, "producer_closed", None)  # tolerate a bare forward() sink
            if closed is not None:
                try:
                    closed()
                except Exception:
                    log.exception("producer_closed failed")
        if self.gop is not None:
            self.gop.invalidate()

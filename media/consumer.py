"""Consumer: one viewer's copy of a producer's track.

Per packet only what must differ per viewer is rewritten: SSRC, sequence number,
timestamp and payload type (RFC 3550 §5.1), then SRTP-protected (RFC 3711) and sent.
NACKs are answered from the producer's history, as RTX when negotiated (RFC 4588);
sender reports are translated from the publisher's so lip sync survives (RFC 3550 §6.4.1).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    unpack_remb_fci,
)

from . import consumer_rtcp, metrics
from .aiortc_internals import fast_rtp_writer, intercept_srtcp, park_sender, sender_cname
from .producer import Producer
from .sink import ConsumerState, SinkListener

log = logging.getLogger("liveshop.media.consumer")

_U16 = struct.Struct("!H")
MASK32 = 0xFFFFFFFF
CATCH_UP_CHUNK = 48  # cached packets sent per loop turn when a late joiner catches up

# Module-level names of the states: the hot path compares by identity (``is``), as fast as ints.
NEW, WAITING, SYNC, CATCHUP, LIVE, CLOSED = (
    ConsumerState.NEW,
    ConsumerState.WAITING,
    ConsumerState.SYNC,
    ConsumerState.CATCHUP,
    ConsumerState.LIVE,
    ConsumerState.CLOSED,
)


class Consumer:
    """One viewer track fed from a :class:`~media.producer.Producer`: a :class:`~media.sink.Joiner`.

    ``listener`` (the show's Router, which owns the producer → sinks relation) is told when
    the consumer closes, so the Router forgets it without knowing about viewer sessions.
    """

    def __init__(
        self,
        show_id: str,
        viewer_id: str,
        kind: str,
        sender: RTCRtpSender,
        listener: SinkListener | None = None,
    ) -> None:
        self.show_id = show_id
        self.viewer_id = viewer_id
        self.kind = kind
        self.sender = sender
        self.listener = listener
        self.producer: Producer | None = None
        self.state = NEW
        self.pt = 0
        self.rtx_pt: int | None = None
        self.clock_rate = 90000 if kind == "video" else 48000
        self.ssrc = 0
        self.rtx_ssrc = 0
        self.seq_next = random.getrandbits(16)
        self.ts_next = random.getrandbits(32)
        self.seq_off = 0
        self.ts_off = 0
        self.rtx_seq = random.getrandbits(16)
        self.packets = 0
        self.octets = 0
        self.nacks = 0
        self.retransmits = 0
        self.plis = 0
        self.rtt: float | None = None
        self.fraction_lost = 0.0
        self.remb: int | None = None
        self.first_sent_at: float | None = None
        self._squash: dict[int, int] = {}
        self._pending: list[RtpPacket] = []
        self._send: Callable[[bytes, int, int, int, int, int], None] | None = None
        self._write_rtcp: Callable[[bytes], None] | None = None
        self._close_output: Callable[[], None] | None = None
        self._intake: Any = None  # the connection's RtcpIntake (media/consumer_rtcp.py)
        self._lsr: int | None = None
        self._lsr_time = 0.0
        self._cname: bytes | None = None
        self._reported = (0, 0, 0, 0)
        self._series: tuple[Any, ...] | None = None
        self._task: asyncio.Task[None] | None = None
        park_sender(sender, self._on_rtcp, self._rtcp_loop, self._on_start)

    # ------------------------------------------------------------------ setup
    def _on_start(self, parameters: RTCRtpSendParameters, ssrc: int, rtx_ssrc: int) -> None:
        codec = parameters.codecs[0]
        self.pt = int(codec.payloadType or 0)
        self.clock_rate = codec.clockRate
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        for other in parameters.codecs:
            if other.mimeType.lower().endswith("/rtx") and other.parameters.get("apt") == self.pt:
                self.rtx_pt = other.payloadType

    def connect(self) -> bool:
        """Bind to the viewer's SRTP session and ICE pair (after DTLS is connected)."""
        if self._send is not None:
            return True
        if self.state is CLOSED:
            # the session ended while it waited to connect: binding now would put a closed
            # consumer in the connection's intake and its consent on the clock, for ever
            return False
        output = fast_rtp_writer(self.sender.transport)
        if output is None:
            return False
        self._send, self._write_rtcp, self._close_output = output
        # The viewer's RTCP from now on comes straight from the socket callback, not through
        # aiortc's coroutines (park_sender's handler stays for anything before this point).
        self._intake = consumer_rtcp.intake_for(self.sender.transport, intercept_srtcp)
        if self._intake is not None:
            self._intake.add(self)
        return True

    def attach(self, producer: Producer) -> None:
        """Start (or, after a publisher replacement, continue) from ``producer``."""
        if self.producer is not None:
            self.detach()
        self.producer = producer
        producer.add_joiner(self)

    def detach(self) -> None:
        """Leave the producer, remembering where our sequence and timestamps were."""
        producer = self.producer
        if producer is None:
            return
        producer.remove_sink(self)
        if self.state is LIVE and producer.last_seq is not None and producer.last_ts is not None:
            self.seq_next = (producer.last_seq + self.seq_off + 1) & 0xFFFF
            self.ts_next = (producer.last_ts + self.ts_off + self.clock_rate // 10) & MASK32
        self.producer = None
        self.state = NEW
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def producer_closed(self) -> None:
        """The producer closed under us (the Router moves us to a replacement, if any)."""
        self.detach()

    def sync_next(self) -> None:
        """Audio: start with the next packet."""
        self.state = SYNC

    def wait_keyframe(self) -> None:
        self.state = WAITING

    # ------------------------------------------------------------------ hot path
    def forward(self, p: RtpPacket) -> None:
        if self.state is not LIVE:
            if self.state is CATCHUP:
                self._pending.append(p)
                return
            if self.state is not SYNC:
                return
            self.seq_off = (self.seq_next - p.sequence_number) & 0xFFFF
            self.ts_off = (self.ts_next - p.timestamp) & MASK32
            self.state = LIVE
        payload = p.payload
        self._send(  # type: ignore[misc]
            payload,
            p.marker,
            self.pt,
            (p.sequence_number + self.seq_off) & 0xFFFF,
            (p.timestamp + self.ts_off) & MASK32,
            self.ssrc,
        )
        self.packets += 1
        self.octets += len(payload)

    # ------------------------------------------------------------------ instant join
    def catch_up(self, snapshot: list[RtpPacket]) -> None:
        """Send the cached GOP now, timestamps squashed so the viewer shows it at once.

        Cached frames get consecutive timestamps ending at ``ts_next``; live packets then
        continue at their natural spacing from the last cached frame.
        """
        if not snapshot:
            self.wait_keyframe()
            return
        first = snapshot[0].sequence_number
        ordered = sorted(snapshot, key=lambda p: (p.sequence_number - first) & 0xFFFF)
        frames: list[int] = []
        for p in ordered:
            if not frames or frames[-1] != p.timestamp:
                if p.timestamp not in frames:
                    frames.append(p.timestamp)
        n = len(frames)
        base = self.ts_next
        self._squash = {ts: (base - (n - 1 - i)) & MASK32 for i, ts in enumerate(frames)}
        self.seq_off = (self.seq_next - first) & 0xFFFF
        self.ts_off = (base - frames[-1]) & MASK32
        if self.first_sent_at is None:
            self.first_sent_at = time.monotonic()
        if len(ordered) <= CATCH_UP_CHUNK:
            self._send_cached_burst(ordered)
            self.state = LIVE
            return
        self.state = CATCHUP
        self._pending = []
        self._task = asyncio.ensure_future(self._catch_up(ordered))

    async def _catch_up(self, ordered: list[RtpPacket]) -> None:
        # Paced so the viewer's socket buffer is not flooded by a long GOP at once.
        for start in range(0, len(ordered), CATCH_UP_CHUNK):
            if self.state != CATCHUP:
                return
            self._send_cached_burst(ordered[start : start + CATCH_UP_CHUNK])
            await asyncio.sleep(0.002)
        pending, self._pending = self._pending, []
        self.state = LIVE
        self._task = None
        for p in pending:
            self.forward(p)

    def _send_cached_burst(self, packets: list[RtpPacket]) -> None:
        """Cached packets in one go: one ``sendmmsg`` with the C writer (media/_fastpath.c),
        else one write each."""
        burst = getattr(self._send, "burst", None)
        if burst is None:
            for p in packets:
                self._send_cached(p)
            return
        squash, ts_off, seq_off, pt, ssrc = (
            self._squash,
            self.ts_off,
            self.seq_off,
            self.pt,
            self.ssrc,
        )
        burst(
            [
                (
                    p.payload,
                    p.marker,
                    pt,
                    (p.sequence_number + seq_off) & 0xFFFF,
                    squash.get(p.timestamp, (p.timestamp + ts_off) & MASK32),
                    ssrc,
                )
                for p in packets
            ]
        )
        self.packets += len(packets)
        self.octets += sum(len(p.payload) for p in packets)

    def _send_cached(self, p: RtpPacket) -> None:
        ts = self._squash.get(p.timestamp, (p.timestamp + self.ts_off) & MASK32)
        payload = p.payload
        self._send(  # type: ignore[misc]
            payload, p.marker, self.pt, (p.sequence_number + self.seq_off) & 0xFFFF, ts, self.ssrc
        )
        self.packets += 1
        self.octets += len(payload)

    # ------------------------------------------------------------------ RTCP in
    def _on_rtcp(self, packet: AnyRtcpPacket) -> None:
        """aiortc's path (RTCP before :meth:`connect` installed the intake): same handlers."""
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.on_nack([seq & 0xFFFF for seq in packet.lost])
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.on_pli()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if self.ssrc in ssrcs:
                    self.on_remb(bitrate)
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == self.ssrc:
                    self.on_receiver_report(report.fraction_lost, report.lsr, report.dlsr)

    def on_pli(self) -> None:
        """PLI or FIR (RFC 4585 §6.3.1, RFC 5104 §4.3.1): the producer asks, throttled."""
        self.plis += 1
        metrics.PLI_RECEIVED.labels(self.show_id).inc()
        if self.producer is not None:
            self.producer.request_keyframe()

    def on_remb(self, bitrate: int) -> None:
        self.remb = bitrate

    def on_receiver_report(self, fraction_lost: int, lsr: int, dlsr: int) -> None:
        """A report block about our SSRC (RFC 3550 §6.4.1): loss, and RTT from LSR/DLSR."""
        self.fraction_lost = fraction_lost / 256
        if self._lsr is not None and lsr == self._lsr and dlsr:
            rtt = time.time() - self._lsr_time - dlsr / 65536
            if rtt >= 0:
                self.rtt = rtt if self.rtt is None else 0.85 * self.rtt + 0.15 * rtt

    def on_nack(self, lost: list[int]) -> None:
        """Answer a generic NACK (RFC 4585 §6.2.1) from the producer's packet history."""
        producer = self.producer
        self.nacks += len(lost)
        send = self._send
        if producer is None or send is None or self.state not in (LIVE, CATCHUP):
            return
        for seq in lost:
            p = producer.history.get((seq - self.seq_off) & 0xFFFF)
            if p is None:
                continue
            ts = self._squash.get(p.timestamp, (p.timestamp + self.ts_off) & MASK32)
            if self.rtx_pt is not None:
                # RFC 4588 §4: RTX payload = original sequence number + original payload.
                send(
                    _U16.pack(seq) + p.payload,
                    p.marker,
                    self.rtx_pt,
                    self.rtx_seq,
                    ts,
                    self.rtx_ssrc,
                )
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            else:
                send(p.payload, p.marker, self.pt, seq, ts, self.ssrc)
            self.retransmits += 1

    # ------------------------------------------------------------------ RTCP out
    async def _rtcp_loop(self) -> None:
        """The sender's RTCP task (aiortc starts and cancels it) only joins the loop's
        :class:`~media.consumer_rtcp.RtcpClock`, which sends our reports: no wake-ups here."""
        clock = consumer_rtcp.clock()
        clock.add(self)
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            clock.discard(self)

    def send_sender_report(self) -> None:
        """A sender report translated from the publisher's (RFC 3550 §6.4.1) + SDES CNAME."""
        producer = self.producer
        if self._write_rtcp is None or producer is None or producer.sr is None:
            return
        if self.state is not LIVE:
            return
        ntp, rtp_ts, wall = producer.sr
        now = time.time()
        elapsed = now - wall
        ntp_now = ntp + int(elapsed * (1 << 32))
        rtp_now = (rtp_ts + self.ts_off + int(elapsed * self.clock_rate)) & MASK32
        if self._cname is None:
            self._cname = (sender_cname(self.sender) or "").encode()
        packets = consumer_rtcp.sender_report(
            self.ssrc,
            ntp_now & 0xFFFFFFFFFFFFFFFF,
            rtp_now,
            self.packets & MASK32,
            self.octets & MASK32,
            self._cname,
        )
        self._lsr = (ntp_now >> 16) & MASK32
        self._lsr_time = now
        self._write_rtcp(packets)

    def report(self, batch: dict[Any, float] | None = None) -> None:
        """Publish counter deltas and per-viewer gauges (labelled series looked up once).

        With ``batch`` (the RtcpClock's tick) counter deltas are summed there per series
        and incremented once for every consumer of the tick.
        """
        if self._series is None:
            show, viewer, kind = self.show_id, self.viewer_id, self.kind
            self._series = (
                metrics.PACKETS_SENT.labels(show, kind),
                metrics.BYTES_SENT.labels(show, kind),
                metrics.NACKS_RECEIVED.labels(show),
                metrics.RETRANSMITS.labels(show),
                metrics.VIEWER_PACKETS.labels(show, viewer, kind),
                metrics.VIEWER_LOSS.labels(show, viewer, kind),
            )
        sent, sent_bytes, nacked, resent, viewer_packets, viewer_loss = self._series
        packets, octets, nacks, rtx = self._reported
        deltas = (
            (sent, self.packets - packets),
            (sent_bytes, self.octets - octets),
            (nacked, self.nacks - nacks),
            (resent, self.retransmits - rtx),
        )
        for series, delta in deltas:
            if delta:
                if batch is None:
                    series.inc(delta)
                else:
                    batch[series] = batch.get(series, 0) + delta
        self._reported = (self.packets, self.octets, self.nacks, self.retransmits)
        viewer_packets.set(self.packets)
        viewer_loss.set(self.fraction_lost)
        if self.rtt is not None:
            metrics.VIEWER_RTT.labels(self.show_id, self.viewer_id, self.kind).set(self.rtt)
        if self.remb is not None and self.kind == "video":
            metrics.VIEWER_REMB.labels(self.show_id, self.viewer_id).set(self.remb)

    def close(self) -> None:
        if self.state is CLOSED:
            return
        self.report()
        self.detach()
        self.state = CLOSED
        # Off the clock now, not when aiortc cancels the sender's RTCP task: a close that
        # sticks (media.session.close_peer) never cancels it, and the clock would keep us.
        consumer_rtcp.clock().discard(self)
        if self.listener is not None:
            self.listener.sink_closed(self)
        self._send = None
        self._write_rtcp = None
        if self._intake is not None:
            consumer_rtcp.release_intake(self.sender.transport, self)
            self._intake = None
        if self._close_output is not None:
            self._close_output()
            self._close_output = None

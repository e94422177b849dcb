"""A light WHEP viewer: counts RTP and answers RTCP without depayloading or decoding.

aiortc's normal receive path costs ≈ 200 µs of Python per packet (jitter buffer, depayload,
decode in a thread); a load tester running hundreds of viewers beside the server cannot pay
that. Here each receiver's ``_handle_rtp_packet`` is replaced by one that keeps aiortc's RTCP
statistics (so receiver reports still flow), sends NACKs through aiortc's own generator, and
counts packets, bytes, losses and frames (an RTP timestamp change, a keyframe read from the
VP8/H.264 payload header) — and nothing else. ``decode=True`` keeps aiortc's full path and
counts decoded frames instead.

aiortc's private receiver state is reached only through ``media.aiortc_internals`` (the one
module that touches aiortc internals, checked by its ``check_internals``); the handler here
gets it as a :class:`~media.aiortc_internals.ReceiverState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtp import RtpPacket

from media.aiortc_internals import ReceiverState, replace_rtp_handler
from media.aiortc_internals import check_internals as media_check_internals


async def check_internals() -> list[str]:
    """aiortc internals this module needs (through media.aiortc_internals) that are missing."""
    return media_check_internals()


def is_keyframe_start(codec: str, payload: bytes) -> bool:
    """Whether this RTP payload begins a keyframe (VP8 payload header P bit, H.264 IDR/SPS)."""
    if not payload:
        return False
    if codec == "vp8":
        first = payload[0]
        if not first & 0x10 or first & 0x07:  # S bit (start of partition), partition id 0
            return False
        offset = 1
        if first & 0x80:  # X: extension byte
            ext = payload[1]
            offset = 2
            if ext & 0x80:  # I: picture id, 7 or 15 bits
                offset += 2 if payload[offset] & 0x80 else 1
            if ext & 0x40:  # L: TL0PICIDX
                offset += 1
            if ext & 0x30:  # T or K
                offset += 1
        return offset < len(payload) and not payload[offset] & 0x01
    if codec == "h264":
        nal = payload[0] & 0x1F
        if nal in (5, 7):
            return True
        if nal == 24:  # STAP-A: first aggregated NAL
            return len(payload) > 3 and (payload[3] & 0x1F) in (5, 7)
        if nal == 28:  # FU-A start of an IDR
            return len(payload) > 1 and bool(payload[1] & 0x80) and (payload[1] & 0x1F) == 5
    return False


@dataclass
class ViewerStats:
    """What one viewer saw."""

    started: float = 0.0
    connected_at: float | None = None
    first_frame_at: float | None = None
    packets: int = 0
    rtx_packets: int = 0
    bytes: int = 0
    frames: int = 0
    keyframes: int = 0
    lost: int = 0
    expected: int = 0
    window_start: float | None = None
    window_frames: int = 0
    window_bytes: int = 0
    _last_ts: dict[int, int] = field(default_factory=dict)
    _seq: dict[int, tuple[int, int, int]] = field(
        default_factory=dict
    )  # ssrc → (base, highest, received)
    _got_key: bool = False
    _key_frame_open: bool = False

    def frame_done(self, now: float, key: bool) -> None:
        self.frames += 1
        self.keyframes += int(key)
        if self.first_frame_at is None and (self._got_key or key):
            self.first_frame_at = now
        if self.window_start is not None:
            self.window_frames += 1

    def loss_counts(self) -> tuple[int, int]:
        """(lost, expected) over every video SSRC, from sequence numbers (before retransmission)."""
        expected = sum(highest - base + 1 for base, highest, _ in self._seq.values())
        received = sum(count for _, _, count in self._seq.values())
        return max(0, expected - received), expected


def _light_handler(stats: ViewerStats, decode: bool) -> Any:
    """``make`` for ``replace_rtp_handler``: a replacement RTP handler keeping aiortc's
    statistics, sending its NACKs and counting, with no depayload and no decode. With
    ``decode`` (``--decode``) it only counts bytes and sequence numbers, then hands the packet
    to aiortc's own handler, which does everything else and decodes."""

    def make(state: ReceiverState, original: Any) -> Any:
        forward = original if decode else None
        codecs, streams, nack = state.codecs, state.streams, state.nack

        def _count(packet: RtpPacket, codec: Any) -> str:
            """Bytes, packets and sequence numbers; returns the codec name."""
            stats.bytes += len(packet.payload)
            if stats.window_start is not None:
                stats.window_bytes += len(packet.payload)
            name = str(codec.mimeType.split("/")[-1].lower())
            if name == "rtx":
                stats.rtx_packets += 1
                return name
            stats.packets += 1
            seq = packet.sequence_number
            base, highest, count = stats._seq.get(packet.ssrc, (seq, seq - 1, 0))
            unwrapped = seq
            while unwrapped < highest - 32768:
                unwrapped += 65536
            stats._seq[packet.ssrc] = (base, max(highest, unwrapped), count + 1)
            return name

        async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
            codec = codecs.get(packet.payload_type)
            if codec is None:
                return
            if forward is not None:
                _count(packet, codec)
                await forward(packet, arrival_time_ms)
                return
            if packet.ssrc not in streams:
                streams[packet.ssrc] = state.new_stream(codec.clockRate)
            streams[packet.ssrc].add(packet)
            name = _count(packet, codec)
            if name == "rtx":
                return
            if nack is not None and nack.add(packet):
                await state.send_nack(packet.ssrc, sorted(nack.missing))
            if is_keyframe_start(name, packet.payload):
                stats._got_key = True
                stats._key_frame_open = True
            if packet.marker:
                stats.frame_done(time.monotonic(), stats._key_frame_open)
                stats._key_frame_open = False

        return handle

    return make


class WhepViewer:
    """One WHEP playback session (video only) with the light receiver, or full decode."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        show_id: str,
        token: str,
        decode: bool = False,
    ) -> None:
        self.session = session
        self.url = f"{base_url}/whep/{show_id}"
        self.base_url = base_url
        self.token = token
        self.decode = decode
        self.pc = RTCPeerConnection()
        self.stats = ViewerStats()
        self.location: str | None = None
        self._consumer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Offer, POST to WHEP, apply the answer. Raises RuntimeError on a refusal."""
        self.stats.started = time.monotonic()
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        replace_rtp_handler(transceiver.receiver, _light_handler(self.stats, self.decode))

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            if self.pc.connectionState == "connected" and self.stats.connected_at is None:
                self.stats.connected_at = time.monotonic()

        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/sdp"}
        async with self.session.post(
            self.url, data=self.pc.localDescription.sdp, headers=headers
        ) as resp:
            body = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"WHEP {resp.status}: {body[:200]}")
            location = resp.headers.get("Location")
        if location:
            self.location = location if location.startswith("http") else self.base_url + location
        await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
        if self.decode:  # the remote track exists only once the answer is applied
            self._consumer = asyncio.ensure_future(self._consume(transceiver.receiver))

    async def _consume(self, receiver: RTCRtpReceiver) -> None:
        """``--decode``: pull decoded frames from aiortc's track."""
        while True:
            try:
                await receiver.track.recv()
            except Exception:  # MediaStreamError when the track ends
                return
            self.stats.frame_done(time.monotonic(), key=self.stats.frames == 0)

    async def stop(self) -> None:
        """DELETE the WHEP session and close the peer connection."""
        if self.location:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with self.session.delete(
                    self.location, headers={"Authorization": f"Bearer {self.token}"}
                ):
                    pass
        if self._consumer:
            self._consumer.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5)

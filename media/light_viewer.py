"""A light WHEP receiver: counts RTP and answers RTCP (RR, NACK) without decoding.

For load testing and benchmarks: importable client-side without the server (depends on
aiortc and aiohttp only). Decoding is skipped by tapping the receivers (see
:mod:`media.aiortc_internals`), so a viewer costs a fraction of aiortc's normal path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import AnyRtcpPacket, RtpPacket

from .aiortc_internals import tap_receiver
from .gop_cache import KEYFRAME_DETECTORS


@dataclass
class TrackCounters:
    packets: int = 0
    bytes: int = 0
    first_packet_at: float | None = None
    first_keyframe_at: float | None = None
    mime_type: str = ""
    sender_reports: int = 0


@dataclass
class LightViewer:
    """One WHEP viewer that never decodes."""

    ice_servers: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        self.counters: dict[str, TrackCounters] = {
            "video": TrackCounters(),
            "audio": TrackCounters(),
        }
        self.started_at = 0.0
        self.location: str | None = None
        for kind in ("video", "audio"):
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            tap_receiver(transceiver.receiver, self._rtp_handler(kind), self._rtcp_handler(kind))

    def _rtp_handler(self, kind: str):  # type: ignore[no-untyped-def]
        counters = self.counters[kind]

        def on_rtp(packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
            counters.packets += 1
            counters.bytes += len(packet.payload)
            if counters.first_packet_at is None:
                counters.first_packet_at = time.monotonic()
                counters.mime_type = codec.mimeType
            if counters.first_keyframe_at is None and kind == "video":
                detect = KEYFRAME_DETECTORS.get(codec.mimeType.lower())
                if detect is not None and detect(packet.payload):
                    counters.first_keyframe_at = time.monotonic()

        return on_rtp

    def _rtcp_handler(self, kind: str):  # type: ignore[no-untyped-def]
        counters = self.counters[kind]

        def on_rtcp(packet: AnyRtcpPacket) -> None:
            if type(packet).__name__ == "RtcpSrPacket":
                counters.sender_reports += 1

        return on_rtcp

    @property
    def time_to_first_keyframe(self) -> float | None:
        at = self.counters["video"].first_keyframe_at
        return None if at is None else at - self.started_at

    async def offer(self) -> str:
        self.started_at = time.monotonic()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def join(
        self, base_url: str, show_id: str, token: str, session: aiohttp.ClientSession | None = None
    ) -> None:
        """WHEP: POST the offer, apply the answer, keep the Location for :meth:`leave`."""
        own = session is None
        http = session or aiohttp.ClientSession()
        try:
            async with http.post(
                f"{base_url.rstrip('/')}/whep/{show_id}",
                data=await self.offer(),
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
            ) as resp:
                body = await resp.text()
                if resp.status != 201:
                    raise RuntimeError(f"WHEP {resp.status}: {body}")
                location = resp.headers.get("Location", "")
                self.location = (
                    location if location.startswith("http") else base_url.rstrip("/") + location
                )
            await self.answer(body)
        finally:
            if own:
                await http.close()

    async def leave(
        self, token: str | None = None, session: aiohttp.ClientSession | None = None
    ) -> None:
        if self.location and token:
            own = session is None
            http = session or aiohttp.ClientSession()
            try:
                async with http.delete(self.location, headers={"Authorization": f"Bearer {token}"}):
                    pass
            except aiohttp.ClientError:
                pass
            finally:
                if own:
                    await http.close()
        self.location = None
        await self.pc.close()

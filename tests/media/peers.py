"""Real aiortc peers for media tests: a publisher and viewers speaking to a Relay directly."""

from __future__ import annotations

import asyncio
import time

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from pylibsrtp import Policy, Session

from media.publish import EncodedVideoTrack, PublishOptions, ToneTrack, prefer_codec
from media.relay import Relay
from media.session import close_peer, dtls_transports
from tests.waits import wait_until

__all__ = ["SMALL", "TestPublisher", "TestViewer", "srtp_session", "wait_until"]

SMALL = dict(width=320, height=240, fps=30, bitrate=400_000)  # a cheap stream to encode in tests


def ended_by_peer(pc: RTCPeerConnection) -> bool:
    """The other side ended the session: its close_notify closed every DTLS transport here.

    What the server controls, seen at once; ``connectionState`` turns "closed" only when this
    peer's own close has finished (aiortc joins each decoder thread, which a loaded test
    process may take seconds to drain)."""
    transports = dtls_transports(pc)
    return bool(transports) and all(t.state == "closed" for t in transports)


def srtp_session(direction: str) -> Session:
    """A libsrtp session on a fixed key (``SSRC_ANY_OUTBOUND`` / ``SSRC_ANY_INBOUND``): two made
    alike protect alike, so writers can be compared byte for byte."""
    policy = Policy(
        key=bytes(range(44)),
        ssrc_type=getattr(Policy, direction),
        srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
    )
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


class TestViewer:
    """An aiortc viewer that decodes every frame (aiortc's normal receive path)."""

    __test__ = False

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.frames: list = []
        self.audio_frames = 0
        self.first_frame_at: float | None = None
        self.started_at = 0.0
        self.session_id = ""
        self._tasks: list[asyncio.Task] = []
        self.connected_at: float | None = None
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    if self.first_frame_at is None:
                        self.first_frame_at = time.monotonic()
                    self.frames.append((frame.width, frame.height))
                else:
                    self.audio_frames += 1
        except Exception as exc:  # track ended
            self.error = exc

    async def offer(self) -> str:
        self.started_at = time.monotonic()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def join(self, relay: Relay, show_id: str, viewer_id: str = "v") -> None:
        session = await relay.view(show_id, await self.offer(), viewer_id)
        self.session_id = session.id
        await self.answer(session.answer)  # type: ignore[attr-defined]

    @property
    def ttff(self) -> float | None:
        return None if self.first_frame_at is None else self.first_frame_at - self.started_at

    async def wait_frames(self, n: int, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while len(self.frames) < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await close_peer(self.pc, "test peer")


class TestPublisher:
    """An aiortc publisher of the synthetic pattern, straight to a Relay."""

    __test__ = False

    def __init__(self, options: PublishOptions) -> None:
        self.options = options
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video = EncodedVideoTrack(options)
        self.video.sender = self.pc.addTrack(self.video)
        if options.audio:
            self.pc.addTrack(ToneTrack())
        prefer_codec(self.pc, options.codec)
        self.session_id = ""

    async def publish(self, relay: Relay, show_id: str, replace: bool = False) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        session = await relay.publish(show_id, self.pc.localDescription.sdp, replace=replace)
        self.session_id = session.id
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=session.answer, type="answer"))  # type: ignore[attr-defined]

    async def close(self) -> None:
        await close_peer(self.pc, "test peer")

"""``media.publish`` with a file: VP8 (WebM) and H.264 (MP4) are sent without re-encoding."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media.publish import ClockPattern, FileVideoTrack, PublishOptions, make_encoder, prefer_codec
from media.relay import Relay

from .peers import TestViewer, wait_until


def _write_file(path: Path, codec: str) -> None:
    options = PublishOptions(width=320, height=240, fps=30, codec=codec, keyint_s=1.0)
    encoder = make_encoder(options)
    pattern = ClockPattern(320, 240)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx" if codec == "vp8" else "libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.time_base = fractions.Fraction(1, 30)
        for i in range(45):
            for packet in encoder.encode(pattern.frame(i, 30)):
                packet.stream = stream
                out.mux(packet)
        for packet in encoder.encode(None):
            packet.stream = stream
            out.mux(packet)


@pytest.mark.parametrize(("codec", "suffix"), [("vp8", "webm"), ("h264", "mp4")])
async def test_file_published_without_reencoding(tmp_path: Path, codec: str, suffix: str) -> None:
    path = tmp_path / f"clip.{suffix}"
    _write_file(path, codec)
    relay = Relay()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    options = PublishOptions(
        codec="vp8" if codec == "h264" else "h264", loop=True
    )  # the file decides
    track = FileVideoTrack(str(path), options)
    assert options.codec == codec
    pc.addTrack(track)
    prefer_codec(pc, options.codec)
    viewer = TestViewer()
    try:
        await pc.setLocalDescription(await pc.createOffer())
        session = await relay.publish("file", pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=session.answer, type="answer"))  # type: ignore[attr-defined]
        assert relay.routers["file"].producers["video"].codec.mimeType.lower() == f"video/{codec}"
        await viewer.join(relay, "file")
        assert await wait_until(lambda: len(viewer.frames) >= 20, 10), len(viewer.frames)
        assert set(viewer.frames) == {(320, 240)}
    finally:
        await viewer.close()
        await pc.close()
        await relay.close()

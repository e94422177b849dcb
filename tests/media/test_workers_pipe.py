"""The edge end of a pipe as media workers use it: origin-only input, a replacement's re-hello."""

from __future__ import annotations

import json
import socket
import struct

from media.pipe import PipeEdge, pipe_key, seal
from tests.waits import wait_until

KEY = pipe_key("test-secret", "s", "epoch1")


def _hello(pt: int, mime: str = "video/VP8", key: bytes = KEY) -> bytes:
    track = {"kind": "video", "mime": mime, "clock": 90000, "channels": None, "pt": pt}
    return seal(key, json.dumps({"type": "hello", "show": "s", "tracks": [track]}).encode())


def _rtp(pt: int, seq: int, ssrc: int = 1234, key: bytes = KEY) -> bytes:
    return seal(key, struct.pack("!BBHII", 0x80, pt, seq, seq * 3000, ssrc) + b"\x10\x00payload")


async def test_edge_takes_only_the_origins_datagrams_and_follows_a_rehello() -> None:
    ready: list[dict] = []

    async def on_bye(edge: PipeEdge) -> None:
        return None

    edge = PipeEdge("s", lambda e: ready.append(dict(e.producers)), on_bye, KEY)
    port = await edge.bind()
    origin = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        origin.sendto(_hello(96), ("127.0.0.1", port))
        assert await wait_until(lambda: len(ready) == 1, 5)
        assert ready[0]["video"].codec.payloadType == 96
        first = edge.producers["video"]

        origin.sendto(_rtp(96, 1), ("127.0.0.1", port))
        stranger.sendto(_rtp(96, 2), ("127.0.0.1", port))
        stranger.sendto(_hello(100), ("127.0.0.1", port))  # no hijacking the edge either
        # From the origin's own address but not under the pipe's key: forged, dropped, counted.
        origin.sendto(_rtp(96, 3, key=pipe_key("other-secret", "s", "epoch1")), ("127.0.0.1", port))
        # all four datagrams handled: the origin's packet taken, the other three dropped
        assert await wait_until(lambda: edge.dropped == 3 and first.packets_received == 1, 5)
        assert len(ready) == 1

        # A replacement publisher: the origin says hello again; new producers replace the old.
        origin.sendto(_hello(102, "video/H264"), ("127.0.0.1", port))
        assert await wait_until(lambda: len(ready) == 2, 5)
        second = edge.producers["video"]
        assert second is not first and second.codec.mimeType == "video/H264"
        origin.sendto(_rtp(102, 7, ssrc=999), ("127.0.0.1", port))
        assert await wait_until(lambda: second.packets_received == 1, 5)
        assert first.packets_received == 1
    finally:
        origin.close()
        stranger.close()
        await edge.end()

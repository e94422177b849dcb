"""Keyframe detection on real packetized VP8/H.264 and the GOP cache's bookkeeping."""

from __future__ import annotations

import fractions

import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.gop_cache import GopCache, h264_is_keyframe, vp8_is_keyframe
from media.packet_history import PacketHistory
from media.publish import ClockPattern

CODECS = {
    "vp8": (
        RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
        vp8_is_keyframe,
    ),
    "h264": (
        RTCRtpCodecParameters(
            mimeType="video/H264",
            clockRate=90000,
            payloadType=102,
            parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
        ),
        h264_is_keyframe,
    ),
}


def _packets(codec_name: str, frames: int, keyframe_at: set[int]) -> list[RtpPacket]:
    codec, _ = CODECS[codec_name]
    encoder = get_encoder(codec)
    pattern = ClockPattern(320, 240)
    out, seq = [], 1000
    for i in range(frames):
        frame = pattern.frame(i, 30)
        frame.time_base = fractions.Fraction(1, 30)
        payloads, ts = encoder.encode(frame, force_keyframe=i in keyframe_at)
        for j, payload in enumerate(payloads):
            p = RtpPacket(
                payload_type=codec.payloadType, sequence_number=seq & 0xFFFF, timestamp=ts
            )
            p.payload = payload
            p.marker = int(j == len(payloads) - 1)
            out.append(p)
            seq += 1
    return out


@pytest.mark.parametrize("name", ["vp8", "h264"])
def test_keyframes_detected_and_cache_restarts(name: str) -> None:
    _, is_key = CODECS[name]
    packets = _packets(name, 12, keyframe_at={0, 7})
    starts = [p.timestamp for p in packets if is_key(p.payload)]
    assert len(set(starts)) == 2  # frame 0 and frame 7
    cache = GopCache(CODECS[name][0].mimeType)
    started = [cache.add(p) for p in packets]
    assert sum(started) == 2
    snap = cache.snapshot()
    assert snap[0].timestamp == starts[-1]
    assert snap[-1] is packets[-1]


def test_cache_invalid_without_keyframe_and_when_too_long() -> None:
    packets = _packets("vp8", 10, keyframe_at={0})
    cache = GopCache("video/VP8", max_packets=1000)
    for p in packets[5:]:  # joined after the keyframe
        cache.add(p)
    assert cache.snapshot() == []
    small = GopCache("video/VP8", max_packets=3)
    for p in packets:
        small.add(p)
    assert not small.valid


def test_packet_history_ring() -> None:
    history = PacketHistory(8)
    packets = [RtpPacket(sequence_number=s & 0xFFFF) for s in range(65530, 65546)]
    for p in packets:
        history.put(p)
    assert history.get(packets[-1].sequence_number) is packets[-1]
    assert history.get(packets[0].sequence_number) is None  # overwritten

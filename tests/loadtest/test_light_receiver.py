"""The light WHEP receiver's hold on aiortc internals, and its payload parsing."""

from __future__ import annotations

from loadtest.light_receiver import check_internals, is_keyframe_start


async def test_aiortc_receiver_internals_are_where_we_expect() -> None:
    missing = await check_internals()
    assert missing == [], (
        f"aiortc moved private receiver internals used by loadtest/light_receiver.py: {missing}"
    )


def test_vp8_and_h264_keyframe_detection() -> None:
    # VP8: S=1 PID=0, no extension; payload header P bit 0 = keyframe, 1 = interframe.
    assert is_keyframe_start("vp8", bytes([0x10, 0x00, 0x00]))
    assert not is_keyframe_start("vp8", bytes([0x10, 0x01, 0x00]))
    assert not is_keyframe_start("vp8", bytes([0x00, 0x00]))  # not a partition start
    # With X and a 15-bit picture id: descriptor is 4 bytes.
    assert is_keyframe_start("vp8", bytes([0x90, 0x80, 0x81, 0x23, 0x00]))
    assert is_keyframe_start("h264", bytes([0x65]))  # IDR NAL
    assert is_keyframe_start("h264", bytes([0x7C, 0x85]))  # FU-A start of IDR
    assert not is_keyframe_start("h264", bytes([0x41]))  # non-IDR slice

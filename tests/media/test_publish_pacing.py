"""The synthetic publisher's pacing: a source that fell behind its clock (a stalled or
CPU-starved process) catches up without holding the event loop: aiortc's send path does not
suspend, so a recv that did not yield would starve every other task until it caught up."""

from __future__ import annotations

import asyncio
import time

from media.publish import EncodedVideoTrack, PublishOptions, ToneTrack

from .peers import SMALL


async def _ticks_while(recv_calls: int, recv) -> int:  # type: ignore[no-untyped-def]
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    try:
        for _ in range(recv_calls):
            await recv()
    finally:
        ticker.cancel()
    return ticks


async def test_a_late_video_source_yields_between_frames() -> None:
    options = PublishOptions(codec="vp8", **SMALL)
    track = EncodedVideoTrack(options)
    await track.recv()  # starts the clock
    track._start -= 2.0  # the process stalled for two seconds
    ticks = await _ticks_while(3, track.recv)
    assert ticks >= 2  # every recv gave the loop a turn (the ticker starts at the first)
    assert track.frames_sent == 4  # no frame skipped: timestamps stay continuous


async def test_a_late_audio_source_yields_between_frames() -> None:
    track = ToneTrack()
    await track.recv()
    track._start = time.monotonic() - 1.0
    assert await _ticks_while(5, track.recv) >= 4

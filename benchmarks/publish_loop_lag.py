"""How long the synthetic publisher's video encode holds the event loop: on a worker thread
(media/publish.py) against on the loop (how it was before), alternated in one sitting.

    .venv/bin/python benchmarks/publish_loop_lag.py [--rounds 3] [--frames 150] [--codec vp8]

Each round runs one fresh ``EncodedVideoTrack`` per mode for ``--frames`` frames at 640x480
while a 5 ms ticker measures how late the loop wakes it; prints one JSON line per round
(p50/p99/max lateness in ms per mode) and the medians. A late loop delays the audio track's
sends, and aiortc's sender reports then map the audio clock late by as much.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media.publish import EncodedVideoTrack, PublishOptions  # noqa: E402

TICK_S = 0.005


async def lateness(mode: str, frames: int, codec: str) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    if mode == "loop":

        async def inline(_loop: object, _executor: object, fn, *args):  # type: ignore[no-untyped-def]
            return fn(*args)

        loop.run_in_executor = inline.__get__(loop)  # type: ignore[method-assign]
    track = EncodedVideoTrack(PublishOptions(codec=codec, keyint_s=1.0, width=640, height=480))
    late: list[float] = []

    async def tick() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(TICK_S)
            late.append((time.perf_counter() - start - TICK_S) * 1000)

    ticker = asyncio.ensure_future(tick())
    for _ in range(frames):
        await track.recv()
    ticker.cancel()
    late.sort()
    return {
        "p50": round(late[len(late) // 2], 1),
        "p99": round(late[int(len(late) * 0.99)], 1),
        "max": round(late[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--codec", default="vp8", choices=("vp8", "h264"))
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"thread": [], "loop": []}
    for round_ in range(args.rounds):
        for mode in ("loop", "thread"):  # a fresh loop each: the inline patch stays in it
            results[mode].append(asyncio.run(lateness(mode, args.frames, args.codec)))
        print(json.dumps({"round": round_, **{m: r[-1] for m, r in results.items()}}))
    medians = {
        mode: {k: statistics.median(r[k] for r in runs) for k in ("p50", "p99", "max")}
        for mode, runs in results.items()
    }
    print(json.dumps({"codec": args.codec, "median_ms": medians}))


if __name__ == "__main__":
    main()

"""Co-host benchmark (issue 20): server CPU per viewer watching two video streams vs one.

One ``python -m server`` (embedded Redis), two publishers of the same synthetic 720p30
≈ 1.5 Mbps VP8 stream (``media.publish --preencode``: encoded once, looped): the host and a
co-host (the co-host's token on ``POST /whip/{show}`` publishes the cohost stream). Then, in
alternating rounds, N light viewers (count RTP, answer RTCP, never decode) watch either the
host only (one WHEP session each: ``one``) or host and co-host (two sessions each, the viewer
page's layout: ``two``). Server CPU from /proc/PID/stat, packets from /metrics; the baseline
with no viewer (both publishers' ingest) is subtracted, so what is left is the viewers' cost.

    .venv/bin/python benchmarks/cohost_viewers.py [--viewers 10] [--window 5] [--rounds 3]

Expected: ``two`` ≈ 2 × ``one`` per viewer (twice the forwarded packets), and the same µs of
CPU per forwarded packet in both.
"""

# ruff: noqa: ASYNC220, ASYNC221, ASYNC251  (a benchmark orchestrating subprocesses)
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.media_relay import Liveshop, cpu_seconds, http, packets_sent  # noqa: E402
from media.aiortc_internals import configure_ice  # noqa: E402
from media.light_viewer import LightViewer  # noqa: E402


async def publish(server: Liveshop, token: str, name: str) -> subprocess.Popen:
    """``media.publish`` into the show with ``token`` (host: main stream; co-host: cohost)."""
    log = Path(server.tmp) / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "media.publish", "--url", server.base, "--show", server.show]
        + ["--token", token, "--width", "1280", "--height", "720", "--fps", "30"]
        + ["--bitrate", "1500000", "--codec", "vp8", "--keyint", "2", "--preencode", "4"],
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(2400):
        if "publishing" in log.read_text() or proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    print(f"[{name}] {log.read_text().strip()}", flush=True)
    return proc


async def sample(server: Liveshop, window: float) -> tuple[float, float]:
    """Server CPU (cores) and packets sent per second over one window."""
    c0, p0, t0 = cpu_seconds(server.pid), packets_sent(server.base), time.monotonic()
    await asyncio.sleep(window)
    c1, p1, t1 = cpu_seconds(server.pid), packets_sent(server.base), time.monotonic()
    return (c1 - c0) / (t1 - t0), (p1 - p0) / (t1 - t0)


async def watch(server: Liveshop, n: int, streams: tuple[str, ...], window: float) -> dict:
    """N viewers, each playing every stream in ``streams``; one window measured after warm-up."""
    viewers: list[tuple[LightViewer, str]] = []
    for _ in range(n):
        token = json.loads(http(f"{server.base}/api/shows/{server.show}/guest", "POST", {})[1])[
            "token"
        ]
        for stream in streams:
            viewer = LightViewer()
            await viewer.join(server.base, f"{server.show}{stream}", token)
            viewers.append((viewer, token))
    await asyncio.sleep(3.0)  # all joined, catch-up bursts done
    cpu, pps = await sample(server, window)
    received = sum(v.counters["video"].packets for v, _ in viewers)
    for viewer, token in viewers:
        await viewer.leave(token)
    await asyncio.sleep(1.5)
    return {"cpu": cpu, "pps": pps, "video_received": received}


async def run(args: argparse.Namespace) -> None:
    configure_ice(["127.0.0.1"])
    server = Liveshop("native", sys.executable, "vp8")  # starts the server process
    cohost: subprocess.Popen | None = None
    try:
        host_token = await server.open_show("cohost bench")
        invite = json.loads(
            http(
                f"{server.base}/api/shows/{server.show}/cohost/invite",
                "POST",
                {"name": "Bench co-host"},
                host_token,
            )[1]
        )
        server.publisher = await publish(server, host_token, "host")  # stopped by server.stop()
        cohost = await publish(server, invite["token"], "cohost")
        await asyncio.sleep(2.0)
        rows = []
        for round_no in range(args.rounds):
            # the no-viewer baseline (ingest, HTTP, timers) is sampled before each mode
            base_one = await sample(server, args.window / 2)
            one = await watch(server, args.viewers, ("",), args.window)
            base_two = await sample(server, args.window / 2)
            two = await watch(server, args.viewers, ("", "/cohost"), args.window)
            base_cpu = (base_one[0] + base_two[0]) / 2
            base_pps = (base_one[1] + base_two[1]) / 2
            row = {"round": round_no + 1, "base_cpu": base_cpu, "base_pps": base_pps}
            for name, m in (("one", one), ("two", two)):
                extra_cpu, extra_pps = m["cpu"] - base_cpu, m["pps"] - base_pps
                row[f"{name}_ms_per_viewer_s"] = 1000 * extra_cpu / args.viewers
                row[f"{name}_us_per_packet"] = 1e6 * extra_cpu / extra_pps if extra_pps else 0.0
                row[f"{name}_pps"] = m["pps"]
            row["ratio"] = row["two_ms_per_viewer_s"] / row["one_ms_per_viewer_s"]
            rows.append(row)
            print(json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "round"}
        print(
            f"\n{platform.node()} · {os.cpu_count()} CPUs · load {os.getloadavg()[0]:.1f} · "
            f"N = {args.viewers} viewers, {args.window:.0f} s windows, {args.rounds} rounds (medians)"
        )
        print(
            "| viewers watch | server CPU per viewer (ms/s) | µs per forwarded packet | packets/s sent |"
        )
        print("|---|---:|---:|---:|")
        print(
            f"| host only (1 video + 1 audio) | {med['one_ms_per_viewer_s']:.1f} | "
            f"{med['one_us_per_packet']:.1f} | {med['one_pps']:.0f} |"
        )
        print(
            f"| host + co-host (2 video + 2 audio) | {med['two_ms_per_viewer_s']:.1f} | "
            f"{med['two_us_per_packet']:.1f} | {med['two_pps']:.0f} |"
        )
        print(f"\nratio two/one per viewer: {med['ratio']:.2f}")
    finally:
        if cohost is not None:
            cohost.terminate()
            cohost.wait(10)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

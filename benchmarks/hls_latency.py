"""LL-HLS benchmark: glass-to-glass latency in hls.js, server CPU per HLS viewer-second, packager CPU.

Spawns ``python -m server`` (embedded Redis) and a synthetic H.264 publisher (``media.publish``,
640x360@30, live-encoded so keyframes follow the packager's PLIs), then:

1. **Latency**: headless Chromium opens ``/watch/{show}?hls=1`` (hls.js, low-latency mode) and
   samples ``Date.now() - hls.playingDate`` — wall clock minus the ``EXT-X-PROGRAM-DATE-TIME`` of
   the frame on screen — plus hls.js's own ``hls.latency`` every 250 ms. PROGRAM-DATE-TIME is the
   server's arrival time of a frame, so this is server-arrival → screen; the camera → server leg
   is WebRTC's (tens of ms on loopback, see the media relay section).
2. **Packager CPU per show**: ``packager_cpu_s`` from ``/hls/{show}/status`` over a quiet window.
3. **Server CPU per HLS viewer-second**: ``python -m loadtest hls`` with N clients for two
   durations; the difference of server CPU (``/proc/PID/stat``) over the difference of
   viewer-seconds cancels the join cost (tokens, first playlists) and the publisher's ingest.

    .venv/bin/python benchmarks/hls_latency.py [--clients 200] [--sample-s 20]
"""

# ruff: noqa: ASYNC220, ASYNC221, ASYNC251  (a benchmark orchestrating subprocesses)
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtest.client import create_show  # noqa: E402

BENCH_API_KEY = "bench:benchmark-operator-key"  # the operator key the benchmark server runs with
from tests.browser.conftest import CHROMIUM_ARGS, chromium_path  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PY = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * (len(ordered) - 1)))], 3)


async def glass_to_glass(base: str, show: str, sample_s: float) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        page = await browser.new_page()
        await page.goto(f"{base}/watch/{show}?hls=1&name=bench")
        await page.wait_for_function(
            "() => document.querySelector('#video').currentTime > 2", timeout=60_000
        )
        pdt, hls_latency = [], []
        end = time.monotonic() + sample_s
        while time.monotonic() < end:
            row = await page.evaluate(
                """() => { const h = window.liveshop.player.hls;
                return [h.playingDate ? Date.now() - h.playingDate.getTime() : null, h.latency]; }"""
            )
            if row[0] is not None:
                pdt.append(row[0] / 1000)
            if row[1]:
                hls_latency.append(row[1])
            await asyncio.sleep(0.25)
        stalls = await page.evaluate(
            "() => window.liveshop.player.hls.media.getVideoPlaybackQuality().droppedVideoFrames"
        )
        await browser.close()
    return {
        "pdt_vs_wall_s": {"p50": pct(pdt, 50), "p95": pct(pdt, 95), "max": round(max(pdt), 3)},
        "hls_js_latency_s": {"p50": pct(hls_latency, 50), "p95": pct(hls_latency, 95)},
        "samples": len(pdt),
        "dropped_frames": stalls,
    }


def loadtest(base: str, clients: int, duration: float) -> dict:
    out = Path(tempfile.mkdtemp(prefix="liveshop-hls-lt-")) / "report.json"
    argv = [PY, "-m", "loadtest", "hls", "--url", base, "--clients", str(clients)]
    argv += ["--duration", str(duration), "--ramp", "500", "--quiet", "--json", str(out)]
    subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=300)
    return json.loads(out.read_text())


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--sample-s", type=float, default=20.0)
    parser.add_argument("--durations", default="5,15", help="two loadtest durations (slope)")
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="liveshop-bench-hls-")
    server = subprocess.Popen(
        [PY, "-m", "server", "--port", str(port), "--data-dir", tmp, "--ice-addresses",
         "127.0.0.1", "--guest-per-minute", "1000000", "--api-key", BENCH_API_KEY,
         "--ws-connects-per-ip", "0", "--ws-max-per-ip", "0", "--http-anon-per-ip", "0"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    publisher = None
    try:
        for _ in range(100):
            try:
                get_json(base + "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        async with aiohttp.ClientSession() as session:
            show, host_token = await create_show(session, base, "hls bench", BENCH_API_KEY)
        publisher = subprocess.Popen(
            [PY, "-m", "media.publish", "--url", base, "--show", show, "--token", host_token,
             "--codec", "h264", "--width", "640", "--height", "360", "--bitrate", "800000",
             "--keyint", "10"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert publisher.stdout is not None
        assert publisher.stdout.readline().startswith(b"publishing")
        status_url = f"{base}/hls/{show}/status?token={host_token}"
        await asyncio.sleep(3)
        before, t0, cpu0 = get_json(status_url)["hls"], time.monotonic(), cpu_seconds(server.pid)
        await asyncio.sleep(10)
        after, t1, cpu1 = get_json(status_url)["hls"], time.monotonic(), cpu_seconds(server.pid)
        packager_ms_per_s = 1000 * (after["packager_cpu_s"] - before["packager_cpu_s"]) / (t1 - t0)
        idle_server_ms_per_s = 1000 * (cpu1 - cpu0) / (t1 - t0)

        latency = await glass_to_glass(base, show, args.sample_s)

        short, long = (float(d) for d in args.durations.split(","))
        runs = []
        for duration in (short, long):
            c0, w0 = cpu_seconds(server.pid), time.monotonic()
            report = loadtest(base, args.clients, duration)
            runs.append((cpu_seconds(server.pid) - c0, time.monotonic() - w0, report))
        viewer_s = args.clients * (long - short)
        per_viewer_ms = 1000 * (runs[1][0] - runs[0][0]) / viewer_s
        hls_long = runs[1][2]["hls"]
        result = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
            "publisher": "H.264 640x360@30 800 kbit/s, live encode, keyframes on the packager's PLIs",
            "glass_to_glass": latency,
            "packager_cpu_ms_per_s": round(packager_ms_per_s, 2),
            "server_cpu_ms_per_s_publisher_only": round(idle_server_ms_per_s, 2),
            "server_cpu_ms_per_hls_viewer_s": round(per_viewer_ms, 3),
            "loadtest": {
                "clients": args.clients,
                "durations_s": [short, long],
                "server_cpu_s": [round(r[0], 2) for r in runs],
                "clients_within_one_part": hls_long["clients_within_one_part"],
                "reloads_per_client_s": hls_long["reloads_per_client_s"],
                "edge_lag_ms": runs[1][2]["latency_ms"],
                "tester_saturated": runs[1][2]["tester"]["saturated"],
            },
        }
        print(json.dumps(result, indent=2))
        print(
            f"glass-to-glass (PDT vs wall in hls.js) p50 {latency['pdt_vs_wall_s']['p50']} s; "
            f"server {per_viewer_ms:.3f} ms CPU per HLS viewer-second; packager "
            f"{packager_ms_per_s:.2f} ms CPU per second of show",
            file=sys.stderr,
        )
    finally:
        for proc in (publisher, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    asyncio.run(main())

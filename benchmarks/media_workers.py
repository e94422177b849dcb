"""Media workers benchmark: server CPU (every process) and viewers served with 0, 1, 2 workers.

For each ``--workers`` value (alternated over ``--rounds``): spawns ``python -m server
--media-workers W`` (embedded Redis), publishes a synthetic 720p30 ≈1.5 Mbps VP8 stream with
``python -m media.publish --preencode`` (encoded once, looped), attaches N light WHEP
receivers (count RTP, answer RTCP, never decode; they run in this process) for each N of
``--viewers``, and measures over ``--window`` seconds:

- server CPU: the main process and all its children (workers, redis-server), from /proc,
  and the share of each process;
- packets sent to viewers per second (``liveshop_media_packets_sent_total`` of the main
  process plus ``liveshop_media_worker_packets_sent_total`` of the workers);
- viewers served: receivers that got ≥ 90 % of the packets the publisher sent in the window.

    flock /tmp/liveshop-bench.lock .venv/bin/python benchmarks/media_workers.py \\
        [--workers 0,1,2] [--viewers 20,40] [--window 8] [--rounds 2]
"""

# ruff: noqa: ASYNC220, ASYNC240, ASYNC251  (a benchmark orchestrating subprocesses)
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from media.aiortc_internals import configure_ice  # noqa: E402
from media.light_viewer import LightViewer  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PY = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, method: str = "GET", body: dict | None = None) -> str:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant (the workers and redis-server of a server)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError):
                pass
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += children
        frontier = children
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def packets_sent(base: str) -> float:
    text = http(base + "/metrics")
    pattern = r"^liveshop_media_(?:worker_)?packets_sent_total\{[^}]*\} ([0-9.e+]+)$"
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))


def packets_received(base: str) -> float:
    text = http(base + "/metrics")
    pattern = r"^liveshop_media_packets_received_total\{[^}]*\} ([0-9.e+]+)$"
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))


async def measure(base: str, pid: int, show: str, n: int, window: float) -> dict:
    tokens = [
        json.loads(http(f"{base}/api/shows/{show}/guest", "POST", {}))["token"] for _ in range(n)
    ]
    viewers = []
    for token in tokens:
        viewer = LightViewer()
        await viewer.join(base, show, token)
        viewers.append(viewer)
    await asyncio.sleep(4.0)  # warm-up: all joined, catch-up bursts done, stats reported
    pids = process_tree(pid)
    names = {p: _label(Path(f"/proc/{p}/cmdline").read_bytes()) for p in pids}
    c0, s0, i0, t0 = cpu_seconds(pids), packets_sent(base), packets_received(base), time.monotonic()
    r0 = [v.counters["video"].packets + v.counters["audio"].packets for v in viewers]
    await asyncio.sleep(window)
    c1, s1, i1, t1 = cpu_seconds(pids), packets_sent(base), packets_received(base), time.monotonic()
    r1 = [v.counters["video"].packets + v.counters["audio"].packets for v in viewers]
    dt = t1 - t0
    ingest = i1 - i0  # packets the publisher sent in the window (what each viewer should get)
    served = sum(1 for a, b in zip(r0, r1, strict=True) if b - a >= 0.9 * ingest)
    per_process = {names[p]: (c1[p] - c0[p]) / dt for p in c1 if p in c0 and c1[p] - c0[p] > 0}
    for viewer, token in zip(viewers, tokens, strict=True):
        await viewer.leave(token)
    await asyncio.sleep(1.5)
    return {
        "n": n,
        "cpu": sum(per_process.values()),
        "processes": per_process,
        "sent_pps": (s1 - s0) / dt,
        "ingest_pps": ingest / dt,
        "served": served,
    }


def _label(cmdline: bytes) -> str:
    text = cmdline.replace(b"\0", b" ").decode(errors="replace")
    if "redis-server" in text:
        return "redis"
    index = re.search(r"--index (\d+)", text)
    if "media.worker" in text and index:
        return "worker" + index.group(1)
    return "main"


async def run_config(workers: int, viewer_counts: list[int], window: float) -> list[dict]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="liveshop-bench-")
    publisher_log = Path(tmp) / "publisher.log"
    argv = [PY, "-m", "server", "--port", str(port), "--data-dir", tmp]
    argv += ["--ice-addresses", "127.0.0.1", "--guest-per-minute", "1000000"]
    argv += ["--media-workers", str(workers)]
    server = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    publisher = None
    try:
        for _ in range(300):
            try:
                http(base + "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        created = json.loads(http(base + "/api/shows", "POST", {"title": "bench"}))
        show, host_token = created["show"]["id"], created["host_token"]
        publisher = subprocess.Popen(
            [PY, "-m", "media.publish", "--url", base, "--show", show, "--token", host_token]
            + ["--width", "1280", "--height", "720", "--fps", "30", "--bitrate", "1500000"]
            + ["--codec", "vp8", "--keyint", "2", "--preencode", "4"],
            cwd=ROOT,
            stdout=publisher_log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for _ in range(1200):
            if "publishing" in publisher_log.read_text() or publisher.poll() is not None:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        rows = []
        for n in viewer_counts:
            row = await measure(base, server.pid, show, n, window)
            row["workers"] = workers
            rows.append(row)
            shares = "  ".join(f"{k} {v * 100:.0f}%" for k, v in sorted(row["processes"].items()))
            print(
                f"workers={workers} N={n:3d}  server CPU {row['cpu'] * 100:5.1f}% ({shares})  "
                f"sent {row['sent_pps']:6.0f} pkt/s = {row['sent_pps'] / max(row['ingest_pps'], 1):5.1f}"
                f" × ingest  served {row['served']}/{n}  "
                f"CPU/viewer-s {row['cpu'] / n * 1000:5.2f} ms",
                flush=True,
            )
        return rows
    finally:
        if publisher is not None:
            publisher.terminate()
            publisher.wait(10)
        server.terminate()
        server.wait(20)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--viewers", default="20,40")
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    configure_ice(["127.0.0.1"])
    counts = [int(x) for x in args.viewers.split(",")]
    configs = [int(x) for x in args.workers.split(",")]
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    rows: list[dict] = []
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else configs[::-1]  # A/B alternated
        for workers in order:
            rows += await run_config(workers, counts, args.window)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print("\nmedians over rounds:")
    for workers in configs:
        for n in counts:
            same = [r for r in rows if r["workers"] == workers and r["n"] == n]
            cpu = statistics.median(r["cpu"] for r in same)
            sent = statistics.median(r["sent_pps"] / max(r["ingest_pps"], 1) for r in same)
            served = statistics.median(r["served"] for r in same)
            print(
                f"  workers={workers} N={n:3d}: server CPU {cpu * 100:5.1f}%, "
                f"CPU/viewer-s {cpu / n * 1000:5.2f} ms, sent {sent:5.1f} × ingest, served {served:.0f}/{n}"
            )


if __name__ == "__main__":
    asyncio.run(main())

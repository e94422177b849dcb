"""Media workers benchmark: server CPU (every process) and viewers served with 0, 1, 2 workers.

For each ``--workers`` value (alternated over ``--rounds``): spawns ``python -m server
--media-workers W`` (embedded Redis), publishes a synthetic 720p30 ≈1.5 Mbps VP8 stream with
``python -m media.publish --preencode`` (encoded once, looped), attaches N light WHEP
receivers (count RTP, answer RTCP, never decode; in client processes) for each N of
``--viewers``, and measures over ``--window`` seconds:

- server CPU: the main process and all its children (workers, redis-server), from /proc,
  and the share of each process;
- packets sent to viewers per second (``liveshop_media_packets_sent_total`` of the main
  process plus ``liveshop_media_worker_packets_sent_total`` of the workers);
- viewers served: receivers that got ≥ 90 % of the packets the publisher sent in the window
  (the receivers run in ``--clients`` processes of this script, on the same cores);
- an extrapolated ceiling: the N at which the busiest process would need a whole core, or
  the server all the cores (linear fits over the N measured; a model, not a measurement).

    flock /tmp/liveshop-bench.lock .venv/bin/python benchmarks/media_workers.py \\
        [--workers 0,1,2] [--viewers 30,60,90] [--window 8] [--rounds 2] [--clients 2]
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


BENCH_API_KEY = "bench:benchmark-operator-key"  # the operator key the benchmark server runs with


def http(url: str, method: str = "GET", body: dict | None = None, token: str = "") -> str:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
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


class Clients:
    """Light WHEP receivers spread over ``k`` client processes (this script with ``--client``),
    so the load generator is not one Python process pinned to one core."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.latest: list[list[int]] = []
        self._readers: list[asyncio.Task[None]] = []

    async def start(self, base: str, show: str, n: int, k: int) -> None:
        sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
        self.latest = [[] for _ in sizes]
        ready = [asyncio.Event() for _ in sizes]
        for i, size in enumerate(sizes):
            proc = await asyncio.create_subprocess_exec(
                PY, __file__, "--client", base, show, str(size),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
            )  # fmt: skip
            self.procs.append(proc)
            self._readers.append(asyncio.ensure_future(self._read(i, proc, ready[i])))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 120)

    async def _read(self, i: int, proc: asyncio.subprocess.Process, ready: asyncio.Event) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            self.latest[i] = json.loads(line)["counts"]
            ready.set()

    def counts(self) -> list[int]:
        return [c for per_client in self.latest for c in per_client]

    async def stop(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
        for task in self._readers:
            task.cancel()


async def client_main(base: str, show: str, n: int) -> None:
    """``--client``: n light viewers; a JSON line of per-viewer packet counts every 0.2 s
    until stdin closes, then leave."""
    configure_ice(["127.0.0.1"])
    viewers, tokens = [], []
    for _ in range(n):
        token = json.loads(http(f"{base}/api/shows/{show}/guest", "POST", {}))["token"]
        viewer = LightViewer()
        await viewer.join(base, show, token)
        viewers.append(viewer)
        tokens.append(token)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.buffer.read)
    while not stdin_closed.done():
        counts = [v.counters["video"].packets + v.counters["audio"].packets for v in viewers]
        sys.stdout.write(json.dumps({"counts": counts}) + "\n")
        sys.stdout.flush()
        await asyncio.sleep(0.2)
    for viewer, token in zip(viewers, tokens, strict=True):
        await viewer.leave(token)


async def measure(base: str, pid: int, show: str, n: int, window: float, k: int) -> dict:
    clients = Clients()
    await clients.start(base, show, n, k)
    try:
        await asyncio.sleep(4.0)  # warm-up: all joined, catch-up bursts done, stats reported
        pids = process_tree(pid)
        names = {p: _label(Path(f"/proc/{p}/cmdline").read_bytes()) for p in pids}
        c0, s0, i0 = cpu_seconds(pids), packets_sent(base), packets_received(base)
        r0, t0 = clients.counts(), time.monotonic()
        await asyncio.sleep(window)
        c1, s1, i1 = cpu_seconds(pids), packets_sent(base), packets_received(base)
        r1, t1 = clients.counts(), time.monotonic()
    finally:
        await clients.stop()
    await asyncio.sleep(1.5)
    dt = t1 - t0
    ingest = i1 - i0  # packets the publisher sent in the window (what each viewer should get)
    received = [b - a for a, b in zip(r0, r1, strict=True)]
    per_process = {names[p]: (c1[p] - c0[p]) / dt for p in c1 if p in c0 and c1[p] - c0[p] > 0}
    return {
        "n": n,
        "cpu": sum(per_process.values()),
        "processes": per_process,
        "sent_pps": (s1 - s0) / dt,
        "ingest_pps": ingest / dt,
        "delivered": sum(received) / max(s1 - s0, 1),
        "served": sum(1 for r in received if r >= 0.9 * ingest),
    }


def _label(cmdline: bytes) -> str:
    text = cmdline.replace(b"\0", b" ").decode(errors="replace")
    if "redis-server" in text:
        return "redis"
    index = re.search(r"--index (\d+)", text)
    if "media.worker" in text and index:
        return "worker" + index.group(1)
    return "main"


async def run_config(
    workers: int, viewer_counts: list[int], window: float, clients: int
) -> list[dict]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="liveshop-bench-")
    publisher_log = Path(tmp) / "publisher.log"
    argv = [PY, "-m", "server", "--port", str(port), "--data-dir", tmp]
    argv += ["--ice-addresses", "127.0.0.1", "--guest-per-minute", "1000000"]
    argv += ["--api-key", BENCH_API_KEY, "--http-anon-per-ip", "0"]
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
        created = json.loads(http(base + "/api/shows", "POST", {"title": "bench"}, BENCH_API_KEY))
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
            row = await measure(base, server.pid, show, n, window, clients)
            row["workers"] = workers
            rows.append(row)
            shares = "  ".join(f"{k} {v * 100:.0f}%" for k, v in sorted(row["processes"].items()))
            print(
                f"workers={workers} N={n:3d}  server CPU {row['cpu'] * 100:5.1f}% ({shares})  "
                f"sent {row['sent_pps']:6.0f} pkt/s = {row['sent_pps'] / max(row['ingest_pps'], 1):5.1f}"
                f" × ingest  received {row['delivered'] * 100:5.1f}% of sent  "
                f"served {row['served']}/{n}  CPU/viewer-s {row['cpu'] / n * 1000:5.2f} ms",
                flush=True,
            )
        return rows
    finally:
        if publisher is not None:
            publisher.terminate()
            publisher.wait(10)
        server.terminate()
        server.wait(20)


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return b, my - b * mx


def ceilings(rows: list[dict], cores: int) -> tuple[float, float]:
    """Viewers at which (a) the busiest process reaches one core, (b) the whole server reaches
    ``cores`` cores — linear fits of CPU over N, an extrapolation, not a measurement."""
    ns = [float(r["n"]) for r in rows]
    per_process = float("inf")
    for name in rows[0]["processes"]:
        b, a = slope(ns, [r["processes"].get(name, 0.0) for r in rows])
        if b > 0:
            per_process = min(per_process, (1 - a) / b)
    b, a = slope(ns, [r["cpu"] for r in rows])
    return per_process, (cores - a) / b if b > 0 else float("inf")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--viewers", default="30,60,90")
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2, help="client processes for the viewers")
    parser.add_argument("--client", nargs=3, metavar=("BASE", "SHOW", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        await client_main(args.client[0], args.client[1], int(args.client[2]))
        return
    counts = [int(x) for x in args.viewers.split(",")]
    configs = [int(x) for x in args.workers.split(",")]
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    rows: list[dict] = []
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else configs[::-1]  # A/B alternated
        for workers in order:
            rows += await run_config(workers, counts, args.window, args.clients)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print("\nmedians over rounds:")
    cores = os.cpu_count() or 1
    for workers in configs:
        medians = []
        for n in counts:
            same = [r for r in rows if r["workers"] == workers and r["n"] == n]
            names = {name for r in same for name in r["processes"]}
            median = {
                "n": n,
                "cpu": statistics.median(r["cpu"] for r in same),
                "processes": {
                    name: statistics.median(r["processes"].get(name, 0.0) for r in same)
                    for name in names
                },
            }
            medians.append(median)
            sent = statistics.median(r["sent_pps"] / max(r["ingest_pps"], 1) for r in same)
            delivered = statistics.median(r["delivered"] for r in same)
            served = statistics.median(r["served"] for r in same)
            busiest = max(median["processes"].items(), key=lambda kv: kv[1])
            print(
                f"  workers={workers} N={n:3d}: server CPU {median['cpu'] * 100:5.1f}% "
                f"(busiest: {busiest[0]} {busiest[1] * 100:.0f}%), "
                f"CPU/viewer-s {median['cpu'] / n * 1000:5.2f} ms, sent {sent:5.1f} × ingest, "
                f"received {delivered * 100:5.1f}%, served {served:.0f}/{n}"
            )
        if len(counts) > 1:
            one_core, all_cores = ceilings(medians, cores)
            print(
                f"  workers={workers}: extrapolated ceiling {min(one_core, all_cores):.0f} viewers "
                f"(busiest process at one core: {one_core:.0f}; server on all {cores} cores: "
                f"{all_cores:.0f})"
            )


if __name__ == "__main__":
    asyncio.run(main())

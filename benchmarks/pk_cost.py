"""What a PK battle costs at each origin.

Two server processes on one Redis (the embedded redis-server, started here): show A publishes
to node A, show B to node B (pre-encoded 640×360 30 fps VP8 + Opus, ``media.publish``), and
``--viewers N`` light WHEP viewers (count RTP, never decode) watch each show on its own origin.
Each node's CPU (``/proc``, user+system) is measured over ``--window`` seconds in three phases:

1. ``no_pk``: two ordinary shows;
2. ``pk_scoring``: a PK between A and B is running and one socket per side taps likes
   (``--likes-per-s``): the ticker, the score scripts and the ``pk.score`` fan-out;
3. ``pk_side_by_side``: as 2, and every viewer also plays the opponent over WHEP on its own
   node (what the viewer page does): node A now edges B (one pipe in from B, N more copies),
   and B's origin sends one pipe copy of its stream to A (and the other way round).

    .venv/bin/python benchmarks/pk_cost.py [--viewers 10] [--window 8] [--json out.json]

The viewers and publishers run in this process, on the same 2 cores as the nodes.
"""

# ruff: noqa: ASYNC220, ASYNC240, ASYNC251  (a benchmark orchestrating subprocesses)
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from loadtest.client import ShowSocket, call, create_show  # noqa: E402
from media.aiortc_internals import configure_ice  # noqa: E402
from media.light_viewer import LightViewer  # noqa: E402
from media.publish import Publisher, PublishOptions  # noqa: E402
from server.redis.embedded import EmbeddedRedis  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
API_KEY = "bench:pk-benchmark-operator-key-0123456789"
SECRET = "pk-benchmark-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def metric(base: str, name: str) -> float:
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    )


class Node:
    def __init__(self, name: str, redis_url: str, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(data / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(data / name), "--redis-url", redis_url, "--secret", SECRET,
             "--api-key", API_KEY, "--node-id", name, "--ice-addresses", "127.0.0.1",
             "--guest-per-minute", "100000", "--ws-connects-per-ip", "0", "--ws-max-per-ip", "0",
             "--http-anon-per-ip", "0", "--log-level", "WARNING"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"node on {self.port} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def _guest(http: aiohttp.ClientSession, base: str, show: str) -> str:
    return str((await call(http, "POST", f"{base}/api/shows/{show}/guest", None, {}))["token"])


async def _until_live(http: aiohttp.ClientSession, base: str, show: str) -> None:
    deadline = time.monotonic() + 60
    while (await call(http, "GET", f"{base}/api/shows/{show}"))["show"]["status"] != "live":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{show} never went live")
        await asyncio.sleep(0.2)


async def _phase(nodes: dict[str, Node], window: float) -> dict[str, dict[str, float]]:
    sent = {k: metric(n.url, "liveshop_media_packets_sent_total") for k, n in nodes.items()}
    pipe = {k: metric(n.url, "liveshop_media_pipe_packets_total") for k, n in nodes.items()}
    cpu = {k: cpu_s(n.proc.pid) for k, n in nodes.items()}
    t0 = time.monotonic()
    await asyncio.sleep(window)
    dt = time.monotonic() - t0
    out = {}
    for k, n in nodes.items():
        out[k] = {
            "cpu": round((cpu_s(n.proc.pid) - cpu[k]) / dt, 3),
            "packets_sent_per_s": round(
                (metric(n.url, "liveshop_media_packets_sent_total") - sent[k]) / dt
            ),
            "pipe_packets_per_s": round(
                (metric(n.url, "liveshop_media_pipe_packets_total") - pipe[k]) / dt
            ),
        }
    return out


def _per_packet(phases: dict[str, dict[str, dict[str, float]]], side: str) -> float | None:
    """µs of CPU per forwarded packet the opponent's viewers added (None: no clear increase, e.g.
    the viewers in this process could not keep up and their sessions ended)."""
    extra = (
        phases["pk_side_by_side"][side]["packets_sent_per_s"]
        - phases["pk_scoring"][side]["packets_sent_per_s"]
    )
    if extra < 100:
        return None
    cpu = phases["pk_side_by_side"][side]["cpu"] - phases["pk_scoring"][side]["cpu"]
    return round(1e6 * cpu / extra, 1)


async def _tap_likes(sockets: list[ShowSocket], per_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for sock in sockets:
            await sock.send("like", count=1)
        await asyncio.sleep(1 / per_s)


async def run(viewers: int, window: float, likes_per_s: float) -> dict[str, object]:
    configure_ice(["127.0.0.1"])
    data = Path(tempfile.mkdtemp(prefix="pk-bench-"))
    redis = EmbeddedRedis(data / "redis")
    redis_url = redis.start()
    nodes = {"A": Node("A", redis_url, data), "B": Node("B", redis_url, data)}
    for node in nodes.values():
        node.wait()
    result: dict[str, object] = {"viewers_per_show": viewers, "window_s": window}
    publishers: list[Publisher] = []
    watching: list[LightViewer] = []
    sockets: list[ShowSocket] = []
    stop_likes = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as http:
            shows = {}
            for side, node in nodes.items():
                show, host = await create_show(http, node.url, f"show {side}", API_KEY)
                shows[side] = (show, host)
                publisher = Publisher(node.url, show, host, PublishOptions(preencode_s=2.0))
                await publisher.start()
                publishers.append(publisher)
            for side, node in nodes.items():
                await _until_live(http, node.url, shows[side][0])
            tokens: dict[str, list[str]] = {"A": [], "B": []}
            for side, node in nodes.items():
                for _ in range(viewers):
                    token = await _guest(http, node.url, shows[side][0])
                    viewer = LightViewer()
                    await viewer.join(node.url, shows[side][0], token, session=http)
                    watching.append(viewer)
                    tokens[side].append(token)
            await asyncio.sleep(4)  # joined, catch-up bursts over
            phases = {"no_pk": await _phase(nodes, window)}

            (a, host_a), (b, host_b) = shows["A"], shows["B"]
            sent = await call(http, "POST", f"{nodes['A'].url}/api/shows/{a}/pk", host_a,
                              {"show_id": b, "duration_s": 3600})  # fmt: skip
            await call(http, "POST", f"{nodes['B'].url}/api/shows/{b}/pk/accept", host_b,
                       {"invite": sent["invite"]})  # fmt: skip
            for side, node in nodes.items():
                sock = ShowSocket(http, node.url, shows[side][0], tokens[side][0])
                await sock.connect()
                sockets.append(sock)
            tapper = asyncio.ensure_future(_tap_likes(sockets, likes_per_s, stop_likes))
            await asyncio.sleep(2)
            phases["pk_scoring"] = await _phase(nodes, window)

            opponent = {"A": b, "B": a}
            for side, node in nodes.items():
                own = shows[side][0]
                for token in tokens[side]:
                    pk = await call(http, "GET", f"{node.url}/api/shows/{own}/pk", token)
                    viewer = LightViewer()
                    await viewer.join(node.url, opponent[side], pk["opponent_token"], session=http)
                    watching.append(viewer)
            await asyncio.sleep(4)
            phases["pk_side_by_side"] = await _phase(nodes, window)
            stop_likes.set()
            await tapper
            state = await call(http, "GET", f"{nodes['A'].url}/api/shows/{a}/pk", host_a)
            result["final_scores"] = state["pk"]["scores"]
            result["phases"] = phases
            result["extra_cpu"] = {
                side: {
                    "scoring": round(
                        phases["pk_scoring"][side]["cpu"] - phases["no_pk"][side]["cpu"], 3
                    ),
                    "side_by_side": round(
                        phases["pk_side_by_side"][side]["cpu"] - phases["no_pk"][side]["cpu"], 3
                    ),
                    "us_per_extra_packet": _per_packet(phases, side),
                }
                for side in nodes
            }
            for sock in sockets:
                await sock.close()
    finally:
        for viewer in watching:
            await viewer.pc.close()
        for publisher in publishers:
            await publisher.stop()
        for node in nodes.values():
            node.stop()
        redis.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=10, help="light viewers per show")
    parser.add_argument("--window", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--likes-per-s", type=float, default=10.0, help="like taps per s per side")
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args()
    result = asyncio.run(run(args.viewers, args.window, args.likes_per_s))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

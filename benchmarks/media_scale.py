"""Media at scale: one publisher, viewers spread over 1, 2 and 3 nodes (network namespaces here).

Builds the ``loadtest.netns`` lab (nodes A, B, C each in a namespace of its own, one TCP
Redis; needs root), publishes a pre-encoded 640×360 30 fps VP8 stream (``media.publish.Publisher``,
``preencode_s``) to node A, and measures with light WHEP viewers (count RTP, never decode) in
this process:

1. origin CPU per edge: node A's CPU with the publisher and 0, 1, 2 edges (one viewer each
   on B and C), and A's pipe datagrams/s when B's edge carries 1 viewer, then many: one copy
   per edge, not per viewer;
2. TTFF on an edge (WHEP offer → first keyframe packet): the first viewer of a node (edge
   opened on demand) and late joiners on an edge already up;
3. added latency of one pipe hop: the same video packet (matched by payload) at a viewer of
   A, of B (origin → edge) and of C, which runs ``--media-workers 1`` (origin → C's edge →
   C's worker: one more hop);
4. viewers served vs nodes: ``--viewers`` viewers spread evenly over the first 1, 2, 3 nodes;
   per node CPU; served = got ≥ 90 % of the median viewer's video packets in the window.

    sudo .venv/bin/python benchmarks/media_scale.py [--viewers 24] [--window 5] [--json out.json]

The viewers run in this process on the same cores as the nodes: on a small machine they are a
large part of the load, so the numbers are a floor, not a ceiling.
"""

# ruff: noqa: ASYNC220, ASYNC240, ASYNC251  (a benchmark orchestrating subprocesses)
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiortc.rtcrtpparameters import RTCRtpCodecParameters  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402

from loadtest.client import create_show  # noqa: E402
from loadtest.netns import API_KEY, Lab, Node, make_lab  # noqa: E402
from media.aiortc_internals import configure_ice  # noqa: E402
from media.light_viewer import LightViewer  # noqa: E402
from media.publish import Publisher, PublishOptions  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


class ProbeViewer(LightViewer):
    """A light viewer that also notes when each video payload arrived (for the hop latency)."""

    def __post_init__(self) -> None:
        self.arrivals: dict[bytes, float] = {}
        super().__post_init__()

    def _rtp_handler(self, kind: str):  # type: ignore[no-untyped-def]
        count = super()._rtp_handler(kind)
        if kind != "video":
            return count
        arrivals = self.arrivals

        def on_rtp(packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
            count(packet, codec)
            if len(arrivals) < 20000:
                arrivals.setdefault(
                    hashlib.blake2b(packet.payload, digest_size=8).digest(), time.perf_counter()
                )

        return on_rtp


def _cpu(pid: int) -> float:
    """CPU seconds of a process and its children (a node's media workers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
            if argv0.endswith(b"redis-server"):
                continue
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def _server_pid(node: Node) -> int:
    """``ip netns exec`` execs the server: the Popen pid is the server's."""
    return node.proc.pid


async def _cpu_over(nodes: list[Node], window: float) -> dict[str, float]:
    before = {n.name: _cpu(_server_pid(n)) for n in nodes}
    await asyncio.sleep(window)
    return {n.name: round((_cpu(_server_pid(n)) - before[n.name]) / window, 3) for n in nodes}


def _pipe_out(node: Node) -> float:
    return node.metric("liveshop_media_pipe_packets_total").get('direction="out"', 0.0)


async def _guest(http: aiohttp.ClientSession, base: str, show_id: str) -> str:
    async with http.post(f"{base}/api/shows/{show_id}/guest", json={}) as resp:
        return str((await resp.json())["token"])


async def _join(http: aiohttp.ClientSession, node: Node, show_id: str) -> ProbeViewer:
    viewer = ProbeViewer()
    await viewer.join(node.url, show_id, await _guest(http, node.url, show_id), session=http)
    return viewer


async def _wait_keyframe(viewers: list[ProbeViewer], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(v.counters["video"].first_keyframe_at is not None for v in viewers):
            return
        await asyncio.sleep(0.02)


def _hop(near: ProbeViewer, far: ProbeViewer) -> dict[str, float]:
    """Arrival at ``far`` minus at ``near`` of the same payloads (ms): median, p95."""
    deltas = sorted(
        (far.arrivals[k] - t) * 1000 for k, t in near.arrivals.items() if k in far.arrivals
    )
    if not deltas:
        return {"packets": 0}
    return {
        "packets": len(deltas),
        "median_ms": round(statistics.median(deltas), 2),
        "p95_ms": round(deltas[int(0.95 * (len(deltas) - 1))], 2),
    }


async def run(lab: Lab, viewers_total: int, window: float) -> dict[str, object]:
    a, b = lab.start_nodes(["A", "B"])
    (c,) = lab.start_nodes(["C"], "--media-workers", "1")
    nodes = [a, b, c]
    result: dict[str, object] = {}
    async with aiohttp.ClientSession() as http:
        show_id, host_token = await create_show(http, a.url, "media scale", API_KEY)
        # In this process: its ICE gathers on this host's leg of the lab's bridge only.
        publisher = Publisher(a.url, show_id, host_token, PublishOptions(preencode_s=2.0))
        everyone: list[ProbeViewer] = []
        try:
            await publisher.start()
            deadline = time.monotonic() + 60
            while a.metric("liveshop_media_publishers").get(f'show="{show_id}"', 0) < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the publisher never went live")
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.5)  # a full GOP in the origin's cache

            # 1. Origin CPU with 0, 1, 2 edges (one viewer each).
            cpu_edges = [(await _cpu_over([a], window))["A"]]
            first_b = await _join(http, b, show_id)
            everyone.append(first_b)
            await _wait_keyframe([first_b])
            cpu_edges.append((await _cpu_over([a], window))["A"])
            first_c = await _join(http, c, show_id)
            everyone.append(first_c)
            await _wait_keyframe([first_c])
            cpu_edges.append((await _cpu_over([a], window))["A"])
            result["origin_cpu_by_edges"] = cpu_edges
            result["origin_cpu_per_edge"] = round((cpu_edges[2] - cpu_edges[0]) / 2, 3)

            # One copy per edge: A's pipe datagrams/s with B carrying 1 viewer, then 9 more.
            out0, t0 = _pipe_out(a), time.monotonic()
            await asyncio.sleep(window)
            rate_one = (_pipe_out(a) - out0) / (time.monotonic() - t0)
            late = [await _join(http, b, show_id) for _ in range(9)]
            everyone += late
            await _wait_keyframe(late)
            out0, t0 = _pipe_out(a), time.monotonic()
            await asyncio.sleep(window)
            rate_many = (_pipe_out(a) - out0) / (time.monotonic() - t0)
            result["origin_pipe_datagrams_per_s"] = {
                "B_with_1_viewer": round(rate_one),
                "B_with_10_viewers": round(rate_many),
            }

            # 2. TTFF on an edge.
            result["ttff_ms"] = {
                "first_viewer_of_B_edge_opened": round(first_b.time_to_first_keyframe * 1000),  # type: ignore[operator]
                "first_viewer_of_C_edge_and_worker": round(first_c.time_to_first_keyframe * 1000),  # type: ignore[operator]
                "late_joiners_on_B_median": round(
                    statistics.median(v.time_to_first_keyframe for v in late) * 1000  # type: ignore[misc]
                ),
                "late_joiners_on_B_max": round(max(v.time_to_first_keyframe for v in late) * 1000),  # type: ignore[type-var]
            }

            # 3. Hop latency: the same packets at viewers of A, B (1 hop) and C (2 hops).
            on_a = await _join(http, a, show_id)
            everyone.append(on_a)
            await _wait_keyframe([on_a])
            for v in (on_a, first_b, first_c):
                v.arrivals.clear()
            await asyncio.sleep(window)
            result["hop_latency"] = {
                "A_to_B_one_pipe_hop": _hop(on_a, first_b),
                "A_to_C_two_hops_edge_and_worker": _hop(on_a, first_c),
            }
            for v in everyone:
                await v.leave()
            everyone = []

            # 4. Viewers served vs nodes.
            scaling = []
            for k in (1, 2, 3):
                placed = [nodes[i % k] for i in range(viewers_total)]
                crowd = [await _join(http, node, show_id) for node in placed]
                everyone = crowd
                await _wait_keyframe(crowd)
                await asyncio.sleep(1.0)
                before = [v.counters["video"].packets for v in crowd]
                cpu = await _cpu_over(nodes, window)
                got = [v.counters["video"].packets - n for v, n in zip(crowd, before, strict=True)]
                median = statistics.median(got)
                served = sum(1 for g in got if median and g >= 0.9 * median)
                scaling.append(
                    {
                        "nodes": k,
                        "viewers": viewers_total,
                        "served": served,
                        "video_packets_per_viewer_per_s": round(median / window, 1),
                        "cpu_per_node": cpu,
                        "cpu_per_viewer_ms_per_s": {
                            n.name: round(
                                1000
                                * (cpu[n.name] - (cpu_edges[0] if n is a else 0.0))
                                / max(1, placed.count(n)),
                                2,
                            )
                            for n in nodes[:k]
                        },
                    }
                )
                for v in crowd:
                    await v.leave()
                everyone = []
            result["scaling"] = scaling
        finally:
            for v in everyone:
                await v.leave()
            await publisher.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--viewers", type=int, default=24)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("media_scale: needs root (ip netns)")
    with tempfile.TemporaryDirectory(prefix="liveshop-scale-") as tmp:
        lab = make_lab(Path(tmp), "ABC")
        try:
            configure_ice([lab.host_address])
            started = time.monotonic()
            try:
                result = asyncio.run(run(lab, args.viewers, args.window))
            except BaseException:
                for node in lab.nodes:
                    print(f"---- node {node.name}\n{node.log()[-3000:]}", file=sys.stderr)
                raise
            result["seconds"] = round(time.monotonic() - started, 1)
        finally:
            lab.teardown()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

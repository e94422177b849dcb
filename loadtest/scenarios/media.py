"""``media``: a synthetic 720p30 WHIP publisher and N WHEP viewers.

The publisher is ``python -m media.publish --source testsrc`` (pre-encoded once and looped by
default, so that encoding does not eat the CPU the server needs). Viewers use
:mod:`loadtest.light_receiver`: RTP is counted and RTCP answered without depayloading or
decoding (``--decode`` decodes fully). Per viewer: time to first frame (WHEP offer → first
complete frame after a keyframe), fps and bitrate over the steady window, packet loss from
sequence numbers. The server's CPU seconds divided by the packets it forwarded
(``liveshop_media_packets_sent_total`` of the main process and of every ``--media-workers``
worker, from ``/metrics``) gives µs per packet; every server process is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..invariants import check
from .base import GO, Scenario, WorkerEnv
from .common import count_error, mint_with_retry

if TYPE_CHECKING:
    from ..light_receiver import WhepViewer
    from ..runner import Aggregate, Controller

# The main process's counter, and the same counter of every media worker (``--media-workers``),
# which the main process re-exports as ``liveshop_media_worker_…{worker="N"}``.
_SENT = re.compile(r"^liveshop_media_(?:worker_)?packets_sent_total\{([^}]*)\}\s+([0-9.e+]+)", re.M)
_MAIN_CPU = re.compile(r"^process_cpu_seconds_total\s+([0-9.e+]+)", re.M)
_WORKER_CPU = re.compile(
    r'^liveshop_media_worker_cpu_seconds(?:_total)?\{worker="([^"]+)"\}\s+([0-9.e+]+)', re.M
)


def parse_metrics(text: str, show_id: str) -> dict[str, Any]:
    """From a ``/metrics`` page: RTP packets sent to this show's viewers by every server process
    (main and workers), and the CPU seconds of each process (``main``, ``worker N``)."""
    packets = sum(float(v) for labels, v in _SENT.findall(text) if f'show="{show_id}"' in labels)
    main = _MAIN_CPU.search(text)
    cpu = {"main": float(main.group(1))} if main else {}
    cpu.update({f"worker {w}": float(v) for w, v in _WORKER_CPU.findall(text)})
    return {"packets": packets, "cpu": cpu}


async def server_counters(ctl: Controller, show_id: str) -> dict[str, Any]:
    async with ctl.session.get(ctl.url + "/metrics") as resp:
        return parse_metrics(await resp.text(), show_id)


async def settled_counters(ctl: Controller, show_id: str, rounds: int = 4) -> dict[str, Any]:
    """The counters once they stop moving: media workers ship their metrics to the main process
    about once a second, so the first read after the viewers stop can lag behind them."""
    last = await server_counters(ctl, show_id)
    for _ in range(rounds):
        await asyncio.sleep(1.2)
        now = await server_counters(ctl, show_id)
        if now["packets"] == last["packets"]:
            return now
        last = now
    return last


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))], 2)


class MediaScenario(Scenario):
    name = "media"
    help = "WebRTC: a synthetic 720p30 publisher (WHIP) and --viewers WHEP viewers; TTFF, fps, bitrate, loss"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--viewers", type=int, default=10, help="WHEP viewers")
        parser.add_argument(
            "--decode", action="store_true", help="fully decode video (heavier) instead of counting"
        )
        parser.add_argument("--width", type=int, default=1280)
        parser.add_argument("--height", type=int, default=720)
        parser.add_argument("--fps", type=int, default=30)
        parser.add_argument(
            "--bitrate", type=int, default=1_500_000, help="publisher bitrate, bit/s"
        )
        parser.add_argument("--codec", choices=("vp8", "h264"), default="vp8")
        parser.add_argument(
            "--preencode",
            type=float,
            default=4.0,
            help="seconds encoded once and looped (0: live encode)",
        )

    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__(args)
        self.publisher: subprocess.Popen[str] | None = None

    async def prepare(self, ctl: Controller) -> dict[str, Any]:
        a = self.args
        from ..client import create_show

        show_id, host_token = await create_show(ctl.session, ctl.url, "loadtest media", ctl.api_key)
        argv = [
            sys.executable, "-m", "media.publish", "--url", ctl.url, "--show", show_id, "--token", host_token,
            "--source", "testsrc", "--width", str(a["width"]), "--height", str(a["height"]), "--fps", str(a["fps"]),
            "--bitrate", str(a["bitrate"]), "--codec", a["codec"], "--no-audio",
            "--ice-address", _ice_address(ctl.url),
        ]  # fmt: skip
        if a["preencode"]:
            argv += ["--preencode", str(a["preencode"])]
        self.publisher = await asyncio.to_thread(_start_publisher, argv)
        line = await asyncio.wait_for(asyncio.to_thread(self._wait_publishing), 180)
        ctl.notes.append(f"publisher: {line.strip()}")
        return {
            "show_id": show_id,
            "host_token": host_token,
            "counters_before": await server_counters(ctl, show_id),
        }

    def _wait_publishing(self) -> str:
        assert self.publisher and self.publisher.stdout
        seen = []
        for line in self.publisher.stdout:
            seen.append(line)
            if line.startswith("publishing"):
                return line
        raise RuntimeError("publisher exited: " + "".join(seen[-20:]))

    async def control(self, ctl: Controller, plan: dict[str, Any]) -> None:
        a = self.args
        await ctl.wait_counter(
            "joined", a["viewers"], limit_s=a["viewers"] / max(a["ramp"], 1) + 60
        )
        await asyncio.sleep(
            2.0
        )  # let the last viewers get their first frame before the steady window
        ctl.phase = "watching"
        ctl.set_flag(GO, time.monotonic())

    async def run_worker(self, plan: dict[str, Any], env: WorkerEnv) -> None:
        from ..light_receiver import WhepViewer

        with contextlib.suppress(ImportError):
            from media.aiortc_internals import configure_ice

            configure_ice([_ice_address(env.url)])
        viewers: list[WhepViewer] = []

        async def join(i: int) -> None:
            await env.sleep_until(env.t0 + i / max(self.args["ramp"], 0.001))
            env.stats.add("clients")
            try:
                token, _ = await mint_with_retry(
                    env, plan["show_id"], plan["host_token"], "viewer", f"Watcher {i}"
                )
                viewer = WhepViewer(
                    env.session, env.url, plan["show_id"], token, decode=self.args["decode"]
                )
                await viewer.start()
                viewers.append(viewer)
                env.stats.gauges["connected"] = env.stats.gauges.get("connected", 0) + 1
            except Exception as exc:  # any failure to start playback counts as a connect error
                count_error(env, "whep", exc, connect=True, final=True)
            env.stats.add("joined")

        await asyncio.gather(*(join(i) for i in env.share(self.args["viewers"])))
        go = await env.wait_flag(GO)
        for v in viewers:
            v.stats.window_start = go
        end = go + float(self.args["duration"])
        while time.monotonic() < end and not env.stopping:
            env.stats.gauges["frames"] = sum(v.stats.frames for v in viewers)
            await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
        span = max(time.monotonic() - go, 0.001)
        env.stats.extra["per_viewer"] = [self._summary(v, span) for v in viewers]
        env.stats.add("frames", sum(v.stats.frames for v in viewers))
        env.stats.add("received", sum(v.stats.packets for v in viewers))
        await asyncio.gather(*(v.stop() for v in viewers))

    @staticmethod
    def _summary(viewer: WhepViewer, span: float) -> dict[str, Any]:
        s = viewer.stats
        lost, expected = s.loss_counts()
        return {
            "ttff_ms": round((s.first_frame_at - s.started) * 1000, 1)
            if s.first_frame_at
            else None,
            "connect_ms": round((s.connected_at - s.started) * 1000, 1) if s.connected_at else None,
            "fps": round(s.window_frames / span, 2),
            "bitrate_kbps": round(s.window_bytes * 8 / span / 1000, 1),
            "frames": s.frames,
            "keyframes": s.keyframes,
            "packets": s.packets,
            "rtx_packets": s.rtx_packets,
            "lost": lost,
            "expected": expected,
        }

    async def finish(self, ctl: Controller, plan: dict[str, Any], agg: Aggregate) -> dict[str, Any]:
        per_viewer = [v for extra in agg.extras for v in extra.get("per_viewer", [])]
        before, after = plan["counters_before"], await settled_counters(ctl, plan["show_id"])
        forwarded = after["packets"] - before["packets"]
        # CPU of every server process over the run, as the server itself reports it (works with
        # --url too; --spawn-server also measures the whole process tree from /proc).
        process_cpu = {
            name: round(seconds - before["cpu"].get(name, 0.0), 3)
            for name, seconds in after["cpu"].items()
        }
        ttffs = [v["ttff_ms"] for v in per_viewer if v["ttff_ms"] is not None]
        with_frames = sum(1 for v in per_viewer if v["frames"] > 0)
        lost = sum(v["lost"] for v in per_viewer)
        expected = sum(v["expected"] for v in per_viewer)
        n = max(len(per_viewer), 1)
        media = {
            "viewers": len(per_viewer),
            "viewers_with_frames": with_frames,
            "decode": bool(self.args["decode"]),
            "ttff_ms": {
                "p50": _percentile(ttffs, 50),
                "p95": _percentile(ttffs, 95),
                "max": max(ttffs, default=None),
            },
            "fps_avg": round(sum(v["fps"] for v in per_viewer) / n, 2),
            "bitrate_kbps": round(sum(v["bitrate_kbps"] for v in per_viewer) / n, 1),
            "loss_pct": round(100 * lost / expected, 3) if expected else 0.0,
            "packets_received": sum(v["packets"] for v in per_viewer),
            "packets_forwarded": int(forwarded),
            "server_processes": len(process_cpu),
            "server_cpu_s_by_process": process_cpu,
            "publisher": {
                k: self.args[k] for k in ("width", "height", "fps", "bitrate", "codec", "preencode")
            },
            "per_viewer": per_viewer,
        }
        return {
            "media": media,
            "invariants": {
                "media_every_viewer_got_frames": check(
                    len(per_viewer) > 0 and with_frames == len(per_viewer),
                    f"{with_frames} of {len(per_viewer)} playing viewers received video frames",
                ),
            },
        }

    async def cleanup(self) -> None:
        """Stop the publisher."""
        proc = self.publisher
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _start_publisher(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _ice_address(url: str) -> str:
    host = urlparse(url).hostname or "127.0.0.1"
    return "127.0.0.1" if host in ("localhost", "127.0.0.1") else host

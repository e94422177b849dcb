"""Run a scenario: worker processes multiplexing many clients each, aggregated into one report.

Each worker is a fresh process (``spawn``) with its own event loop (uvloop when installed)
and one ``aiohttp.ClientSession``. Every second it ships a tick (counter deltas, connected
gauge, interval latency histogram, its own CPU) to the parent, which merges ticks into a
timeline and drives the live view; at the end it ships its full histograms and extras.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import pickle
import queue
import random
import resource
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from . import metrics
from .live import LiveView
from .metrics import WorkerStats, new_histogram
from .scenarios import SCENARIOS
from .scenarios.base import FLAG_SLOTS, STOP, Scenario, WorkerEnv
from .spawn import SpawnedServer, load_average, machine_cpu

TICK_S = 1.0


def raise_fd_limit() -> None:
    """Thousands of sockets per process need more than the default 1024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def install_uvloop() -> str:
    """Use uvloop when it is installed; returns the loop's name for the report."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    except ImportError:
        return "asyncio"


def new_session(limit: int = 0) -> aiohttp.ClientSession:
    """A session for thousands of clients: no per-host connection cap, generous timeouts."""
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=0, force_close=False, ttl_dns_cache=3600
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60, sock_connect=30)
    )


# ---------------------------------------------------------------- worker side


def worker_main(
    name: str, args: dict[str, Any], plan: dict[str, Any], index: int, count: int,
    out: Any, flags: Any, t0: float, url: str,
) -> None:  # fmt: skip
    """Entry point of one worker process."""
    raise_fd_limit()
    install_uvloop()
    try:
        asyncio.run(_worker(name, args, plan, index, count, out, flags, t0, url))
    except BaseException as exc:  # report any crash to the parent rather than dying silently
        out.put(("crash", index, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


async def _worker(
    name: str, args: dict[str, Any], plan: dict[str, Any], index: int, count: int,
    out: Any, flags: Any, t0: float, url: str,
) -> None:  # fmt: skip
    stats = WorkerStats()
    seed = args.get("seed")
    rng = random.Random(None if seed is None else f"{seed}:{index}")
    async with new_session() as session:
        env = WorkerEnv(index, count, url, args, stats, flags, session, rng, t0)
        scenario: Scenario = SCENARIOS[name](args)
        ticker = asyncio.create_task(_ticker(env, out))
        lag = asyncio.create_task(_loop_lag(stats))
        try:
            await scenario.run_worker(plan, env)
        finally:
            for task in list(env.tasks):
                task.cancel()
            await asyncio.gather(*env.tasks, return_exceptions=True)
            ticker.cancel()
            lag.cancel()
            final = stats.final()
            final["cpu_s"] = cpu_seconds()
            out.put(("tick", index, int((time.monotonic() - t0) // TICK_S), _tick_payload(stats)))
            try:
                pickle.dumps(final)
            except (
                Exception
            ) as exc:  # an unpicklable extra would vanish in the queue's feeder thread
                final["extra"] = {}
                out.put(("crash", index, f"worker results not picklable: {exc}"))
            out.put(("done", index, final))


def _tick_payload(stats: WorkerStats) -> dict[str, Any]:
    payload = stats.tick()
    payload["cpu_s"] = cpu_seconds()
    return payload


async def _ticker(env: WorkerEnv, out: Any) -> None:
    n = 1
    while True:
        await env.sleep_until(env.t0 + n * TICK_S)
        out.put(("tick", env.index, n - 1, _tick_payload(env.stats)))
        n += 1


async def _loop_lag(stats: WorkerStats, period: float = 0.05) -> None:
    """How late the event loop wakes up: a saturated tester shows here, not as a slow server."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(period)
        metrics.record_us(stats.hist("loop_lag"), (time.monotonic() - started - period) * 1e6)


# ---------------------------------------------------------------- parent side


@dataclass
class Aggregate:
    """Everything the workers reported, merged."""

    hists: dict[str, Any] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    extras: list[dict[str, Any]] = field(default_factory=list)
    gauges: dict[str, float] = field(default_factory=dict)
    worker_cpu_s: list[float] = field(default_factory=list)
    timeline: dict[int, dict[str, Any]] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)
    live_counters: Counter[str] = field(default_factory=Counter)
    live_gauges: dict[int, dict[str, float]] = field(default_factory=dict)
    live_cpu: dict[int, float] = field(default_factory=dict)

    def hist(self, name: str) -> Any:
        found = self.hists.get(name)
        if found is None:
            found = self.hists[name] = new_histogram()
        return found

    def add_tick(self, index: int, sec: int, payload: dict[str, Any]) -> None:
        slot = self.timeline.setdefault(
            sec, {"counters": Counter(), "latency": new_histogram(), "gauges": {}, "cpu": {}}
        )
        slot["counters"].update(payload["counters"])
        metrics.merge_into(slot["latency"], payload["latency"])
        slot["gauges"][index] = payload["gauges"]
        slot["cpu"][index] = payload["cpu_s"]
        self.live_counters.update(payload["counters"])
        self.live_gauges[index] = payload["gauges"]
        self.live_cpu[index] = payload["cpu_s"]

    def add_final(self, final: dict[str, Any]) -> None:
        for name, encoded in final["hists"].items():
            metrics.merge_into(self.hist(name), encoded)
        self.counters.update(final["counters"])
        for key, value in final["gauges"].items():
            self.gauges[key] = self.gauges.get(key, 0) + value
        self.extras.append(final["extra"])
        self.worker_cpu_s.append(final["cpu_s"])

    def gauge_now(self, name: str) -> float:
        return sum(g.get(name, 0) for g in self.live_gauges.values())

    def timeline_rows(self) -> list[dict[str, Any]]:
        """One row per second: connected clients, rates, interval p99, errors, tester CPU."""
        rows = []
        previous_cpu: dict[int, float] = {}
        for sec in sorted(self.timeline):
            slot = self.timeline[sec]
            c = slot["counters"]
            cpu_delta = sum(cpu - previous_cpu.get(i, 0.0) for i, cpu in slot["cpu"].items())
            previous_cpu.update(slot["cpu"])
            rows.append(
                {
                    "t": sec + 1,
                    "connected": int(sum(g.get("connected", 0) for g in slot["gauges"].values())),
                    "sent": c.get("sent", 0),
                    "received": c.get("received", 0),
                    "errors": c.get("errors", 0) + c.get("connect_errors", 0),
                    "p50_ms": metrics.percentile_ms(slot["latency"], 50),
                    "p99_ms": metrics.percentile_ms(slot["latency"], 99),
                    "tester_cpu_pct": round(100 * cpu_delta / TICK_S, 1) if sec else None,
                }
            )
        return rows


class Controller:
    """The parent's handle on a run: server URL, HTTP session, flags, live progress."""

    def __init__(
        self, args: dict[str, Any], url: str, session: aiohttp.ClientSession, flags: Any
    ) -> None:
        self.args = args
        self.url = url.rstrip("/")
        self.session = session
        self.flags = flags
        self.agg = Aggregate()
        self.workers_done = 0
        self.workers = 0
        self.t0 = time.monotonic()
        self.server: SpawnedServer | None = None
        self.api_key: str | None = args.get("api_key")
        self.phase = "prepare"
        self.notes: list[str] = []

    def set_flag(self, slot: int, value: float = 1.0) -> None:
        self.flags[slot] = value

    async def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> Any:
        """One JSON call to the server; raises RuntimeError with the server's error body otherwise."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.url + path, json=json, headers=headers
        ) as resp:
            body = await resp.json(content_type=None) if resp.content_length != 0 else {}
            if resp.status not in expect:
                raise RuntimeError(f"{method} {path} -> {resp.status}: {body}")
            return body

    async def wait_counter(self, name: str, target: float, limit_s: float) -> bool:
        """Wait until workers' ticks sum counter ``name`` to ``target`` (or all workers ended)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.agg.live_counters.get(name, 0) >= target or self.workers_done >= self.workers:
                return self.agg.live_counters.get(name, 0) >= target
            await asyncio.sleep(0.05)
        return False


@dataclass
class RunResult:
    """What ``run`` hands to the reporters."""

    report: dict[str, Any]
    agg: Aggregate


async def run(args: dict[str, Any]) -> RunResult:
    """Prepare, fan out to workers, control, merge, finish: one complete load test."""
    from .report_json import build_report

    scenario: Scenario = SCENARIOS[args["scenario"]](args)
    server: SpawnedServer | None = None
    if args.get("spawn_server"):
        server = SpawnedServer(args.get("server_args") or [])
        url = await asyncio.to_thread(server.start)
    else:
        url = args["url"]
    ctx = mp.get_context("spawn")
    flags = ctx.Array("d", FLAG_SLOTS, lock=False)
    out: Any = ctx.Queue()
    live = LiveView(args, enabled=not args.get("quiet"))
    started_wall = time.time()
    machine_start = machine_cpu(), load_average()
    processes: list[Any] = []
    try:
        async with new_session() as session:
            ctl = Controller(args, url, session, flags)
            ctl.server = server
            if server is not None:
                ctl.api_key = server.api_key
            plan = await scenario.prepare(ctl)
            ctl.phase = "run"
            ctl.t0 = t0 = time.monotonic()
            count = max(1, int(args.get("processes") or os.cpu_count() or 1))
            ctl.workers = count
            for index in range(count):
                proc = ctx.Process(
                    target=worker_main,
                    args=(scenario.name, args, plan, index, count, out, flags, t0, url),
                    name=f"loadtest-worker-{index}", daemon=True,
                )  # fmt: skip
                proc.start()
                processes.append(proc)
            live.start(ctl)
            control = asyncio.create_task(scenario.control(ctl, plan))
            await _collect(
                ctl, out, processes, live, float(args.get("timeout") or 0) or _default_timeout(args)
            )
            if not control.done():
                flags[STOP] = 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(control), 5)
                control.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                control_error = (
                    control.exception() if control.done() and not control.cancelled() else None
                )
            if control_error:
                ctl.agg.crashes.append(f"control: {type(control_error).__name__}: {control_error}")
            duration = time.monotonic() - t0
            live.stop()
            ctl.phase = "finish"
            extra = await scenario.finish(ctl, plan, ctl.agg)
            server_stats = server.measure() if server else None
            report = build_report(args, ctl, extra, duration, started_wall, server_stats)
            report["machine"] = _machine_report(machine_start, report, cpu_seconds())
            return RunResult(report, ctl.agg)
    finally:
        live.stop()
        flags[STOP] = 1
        with contextlib.suppress(Exception):
            await scenario.cleanup()
        for proc in processes:
            proc.join(3)
            if proc.is_alive():
                proc.terminate()
        if server:
            server.stop()


def _machine_report(
    start: tuple[tuple[float, float], list[float]], report: dict[str, Any], parent_cpu_s: float
) -> dict[str, Any]:
    """How busy the whole machine was: CPU taken by neither the tester nor the server is other
    people's work on a shared machine, which the numbers above suffered from."""
    (busy0, total0), load0 = start
    busy1, total1 = machine_cpu()
    cores = os.cpu_count() or 1
    wall = (total1 - total0) / cores
    busy = busy1 - busy0
    ours = report["tester"]["cpu_s"] + parent_cpu_s
    server = report.get("server") or {}
    ours += server.get("cpu_s", 0.0) + server.get("redis_cpu_s", 0.0)
    return {
        "cores": cores,
        "busy_pct": round(100 * busy / (total1 - total0), 1) if total1 > total0 else None,
        "other_cpu_s": round(max(0.0, busy - ours), 2) if report.get("server") else None,
        "wall_s": round(wall, 2),
        "loadavg_start": load0,
        "loadavg_end": load_average(),
    }


def _default_timeout(args: dict[str, Any]) -> float:
    return float(args.get("duration") or 10) * 3 + 120


async def _collect(
    ctl: Controller, out: Any, processes: list[Any], live: LiveView, limit_s: float
) -> None:
    """Read worker messages until every worker is done (or crashed, or the timeout passes)."""
    deadline = time.monotonic() + limit_s
    finished: set[int] = set()
    loop = asyncio.get_running_loop()
    while len(finished) < len(processes):
        if time.monotonic() > deadline:
            ctl.agg.crashes.append(
                f"timeout: {len(processes) - len(finished)} workers never finished"
            )
            ctl.flags[STOP] = 1
            break
        try:
            message = await loop.run_in_executor(None, out.get, True, 0.2)
        except queue.Empty:
            for index, proc in enumerate(processes):
                if index not in finished and not proc.is_alive() and proc.exitcode not in (None, 0):
                    ctl.agg.crashes.append(f"worker {index} died with exit code {proc.exitcode}")
                    finished.add(index)
            ctl.workers_done = len(finished)
            live.update(ctl)
            continue
        kind, index = message[0], message[1]
        if kind == "tick":
            ctl.agg.add_tick(index, message[2], message[3])
        elif kind == "done":
            ctl.agg.add_final(message[2])
            finished.add(index)
        elif kind == "crash":
            ctl.agg.crashes.append(f"worker {index}: {message[2]}")
            finished.add(index)
        ctl.workers_done = len(finished)
        live.update(ctl)
    # A worker that failed after shipping its totals sends its crash report last.
    with contextlib.suppress(queue.Empty):
        while True:
            message = await loop.run_in_executor(None, out.get, True, 0.3)
            if message[0] == "crash":
                ctl.agg.crashes.append(f"worker {message[1]}: {message[2]}")

"""WorkerPool: the main process's side of ``--media-workers N`` (origin → edge on one machine).

The main process is the origin: publishers (WHIP) arrive here, and recording runs here.
Viewers (WHEP) are placed on the worker with the fewest viewers; the first viewer of a show
on a worker opens a pipe from the origin's producers to that worker (``Relay.pipe_to`` →
the worker's ``accept_pipe``), and the viewer's offer is answered by the worker itself, so
ICE/DTLS/SRTP run between the viewer and the worker. The session id handed out is
``w<index>.<worker's session id>``, so a DELETE finds its worker without any lookup table.

A worker that dies loses its viewers and pipes; new viewers go to the others (or, with no
worker up, to the main process) while it is restarted with a growing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .errors import MediaError
from .ice import IceConfig
from .pipe import PipeOrigin
from .relay import Relay
from .worker import CONTROL_LIMIT, encode

log = logging.getLogger("liveshop.media.workers")

CALL_TIMEOUT_S = 20.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
RESTART_MIN_S, RESTART_MAX_S = 0.5, 30.0
# A viewer refused for one of these is offered to another worker (or, last, the main process).
RETRY_ELSEWHERE = frozenset({"worker_lost", "worker_timeout", "edge_not_ready", "show_full"})
TICKS = os.sysconf("SC_CLK_TCK")
ROOT = str(Path(__file__).resolve().parent.parent)  # on the workers' path: ``-m media.worker``


@dataclass
class WorkerOptions:
    """What each worker's Relay is configured with (the origin's ICE settings, so a viewer
    reaches a worker exactly as it would reach the main process)."""

    ice: IceConfig
    connect_timeout_s: float = 15.0
    gop_max_packets: int = 6000
    max_viewers_per_show: int = 5000
    log_level: str = "INFO"
    log_json: bool = False

    def relay_config(self) -> dict[str, Any]:
        return {
            "ice": asdict(self.ice),
            "connect_timeout_s": self.connect_timeout_s,
            "gop_max_packets": self.gop_max_packets,
            "max_viewers_per_show": self.max_viewers_per_show,
        }


def split_session_id(session_id: str) -> tuple[int, str] | None:
    """``w3.abc`` → (3, "abc"); None for a session of the main process."""
    prefix, dot, rest = session_id.partition(".")
    if not dot or not prefix.startswith("w") or not prefix[1:].isdigit():
        return None
    return int(prefix[1:]), rest


class MediaWorker:
    """The main process's handle on one worker process and its control channel."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.pid = 0
        self.up = asyncio.Event()
        self.restarts = 0
        self.viewers: dict[str, str] = {}  # worker's session id → show, from its replies/events
        self.joining = 0
        self.pipes: dict[str, PipeOrigin] = {}  # show → the origin end feeding this worker
        self.ending: dict[str, asyncio.Task[Any]] = {}  # show → its end_show in flight
        self.pipe_lock = asyncio.Lock()
        self.metrics: list[list[Any]] = []
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.reading: asyncio.Future[None] | None = None  # done when the channel closes

    @property
    def load(self) -> int:
        return len(self.viewers) + self.joining

    async def spawn(self, options: WorkerOptions) -> None:
        """Start the process and configure its relay; returns once it accepts viewers."""
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        argv = ["-m", "media.worker", "--fd", str(theirs.fileno())]
        argv += ["--parent", str(os.getpid()), "--index", str(self.index)]
        argv += ["--log-level", options.log_level] + (["--log-json"] if options.log_json else [])
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *argv,
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C reaches the main process only
            )
        finally:
            theirs.close()
        self._reader, self._writer = await asyncio.open_unix_connection(
            sock=ours, limit=CONTROL_LIMIT
        )
        self.pid = self.process.pid
        self.reading = asyncio.ensure_future(self._read(self._reader))
        await self.call("configure", wait_s=START_TIMEOUT_S, config=options.relay_config())
        self.up.set()

    async def call(self, op: str, wait_s: float = CALL_TIMEOUT_S, **args: Any) -> dict[str, Any]:
        """One request to the worker; its MediaError comes back as ours."""
        if self._writer is None or self._writer.is_closing():
            raise MediaError(503, "worker_lost", f"media worker {self.index} is not running")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(encode({"id": request_id, "op": op, **args}))
        try:
            return await asyncio.wait_for(future, wait_s)
        except TimeoutError:
            raise MediaError(
                504, "worker_timeout", f"media worker {self.index} did not answer {op}"
            ) from None
        finally:
            self._pending.pop(request_id, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Replies and events, until the channel closes (the worker stopped or died)."""
        while True:
            try:
                line = await reader.readline()
            except (ConnectionError, ValueError):
                return
            if not line:
                return
            self._dispatch(json.loads(line))

    def _dispatch(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "ended":
            self.viewers.pop(message["session"], None)
        elif event == "stats":
            self.metrics = message["metrics"]
        elif "id" in message:
            if "session" in message:  # a viewer placed here, counted before anyone awaits it
                self.viewers[message["session"]] = message["show"]
            future = self._pending.pop(message["id"], None)
            if future is None or future.done():
                return
            error = message.get("error")
            if error is not None:
                future.set_exception(MediaError(error["status"], error["code"], error["message"]))
            else:
                future.set_result(message)

    def lost(self) -> list[PipeOrigin]:
        """Forget everything the dead process held; returns the pipes that fed it."""
        self.up.clear()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    MediaError(503, "worker_lost", f"media worker {self.index} stopped")
                )
        self._pending.clear()
        if self._writer is not None:
            self._writer.close()
        self._writer = self._reader = None
        if self.reading is not None:
            self.reading.cancel()
            self.reading = None
        pipes = list(self.pipes.values())
        self.pipes.clear()
        self.viewers.clear()
        self.metrics = []
        return pipes

    async def reap(self, within: float) -> int | None:
        """Wait for the process to exit, killing it if it does not; returns its exit code."""
        process = self.process
        if process is None:
            return None
        try:
            await asyncio.wait_for(process.wait(), within)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        self.process = None
        return process.returncode

    def cpu_seconds(self) -> float | None:
        if not self.pid or not self.up.is_set():
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / TICKS


class WorkerPool:
    """N media worker processes fed from the origin relay of the main process."""

    def __init__(self, relay: Relay, count: int, options: WorkerOptions) -> None:
        self.relay = relay
        self.options = options
        self.workers = [MediaWorker(i) for i in range(count)]
        self.closing = False
        self._supervisors: list[asyncio.Task[None]] = []
        self._next = 0  # round-robin among equally loaded workers
        self._collector = _WorkerMetrics(self)

    async def start(self, wait_s: float = START_TIMEOUT_S) -> None:
        """Start every worker; waits (bounded) until they serve. Failures are retried later."""
        self._supervisors = [asyncio.ensure_future(self._supervise(w)) for w in self.workers]
        REGISTRY.register(self._collector)
        await asyncio.wait(
            [asyncio.ensure_future(w.up.wait()) for w in self.workers], timeout=wait_s
        )
        up = sum(w.up.is_set() for w in self.workers)
        log.info("media workers up", extra={"up": up, "of": len(self.workers)})

    async def _supervise(self, worker: MediaWorker) -> None:
        delay = RESTART_MIN_S
        while not self.closing:
            started = time.monotonic()
            try:
                await worker.spawn(self.options)
                log.info("media worker started", extra={"worker": worker.index, "pid": worker.pid})
                assert worker.reading is not None
                await worker.reading
            except Exception:
                log.exception("media worker %d failed", worker.index)
            viewers = len(worker.viewers)
            for pipe in worker.lost():
                self.relay.close_pipe(pipe)
            code = await worker.reap(STOP_TIMEOUT_S if self.closing else 1.0)
            if self.closing:
                return
            log.error(
                "media worker stopped; its viewers are lost",
                extra={"worker": worker.index, "exit_code": code, "viewers": viewers},
            )
            worker.restarts += 1
            delay = (
                RESTART_MIN_S if time.monotonic() - started > 30 else min(delay * 2, RESTART_MAX_S)
            )
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ viewers
    def _pick(self, exclude: set[int]) -> MediaWorker | None:
        candidates = [w for w in self.workers if w.up.is_set() and w.index not in exclude]
        if not candidates:
            return None
        n = len(self.workers)
        chosen = min(candidates, key=lambda w: (w.load, (w.index - self._next) % n))
        self._next = (chosen.index + 1) % n
        return chosen

    async def view(self, show_id: str, offer_sdp: str, viewer_id: str) -> tuple[str, str]:
        """Place a viewer on the least loaded worker; returns (session id, SDP answer)."""
        self.relay.live_router(show_id)  # 409 not_live before any worker is bothered
        tried: set[int] = set()
        while True:
            worker = self._pick(tried)
            if worker is None:  # no worker up, or none took the viewer: serve it here
                session = await self.relay.view(show_id, offer_sdp, viewer_id)
                return session.id, session.answer  # type: ignore[attr-defined]
            tried.add(worker.index)
            worker.joining += 1
            try:
                await self._ensure_pipe(worker, show_id)
                reply = await worker.call("view", show=show_id, offer=offer_sdp, viewer=viewer_id)
                return f"w{worker.index}.{reply['session']}", reply["answer"]
            except MediaError as exc:
                if exc.code == "edge_not_ready":
                    self._drop_pipe(worker, show_id)
                if exc.code not in RETRY_ELSEWHERE:
                    raise
                log.warning("viewer not placed on worker %d: %s", worker.index, exc.code)
            finally:
                worker.joining -= 1

    async def _ensure_pipe(self, worker: MediaWorker, show_id: str) -> None:
        async with worker.pipe_lock:
            ending = worker.ending.get(show_id)
            if ending is not None:  # the previous broadcast's edge must be gone first
                await asyncio.wait([ending])
            pipe = worker.pipes.get(show_id)
            if pipe is not None and not pipe.closed:
                return
            key = self.relay.pipe_key(show_id).hex()  # over the private socketpair only
            port = (await worker.call("accept_pipe", show=show_id, key=key))["port"]
            try:
                worker.pipes[show_id] = await self.relay.pipe_to(show_id, ("127.0.0.1", port))
            except BaseException:
                self._end_show_on(worker, show_id)
                raise

    def _drop_pipe(self, worker: MediaWorker, show_id: str) -> None:
        pipe = worker.pipes.pop(show_id, None)
        if pipe is not None:
            self.relay.close_pipe(pipe)
        self._end_show_on(worker, show_id)

    def _end_show_on(self, worker: MediaWorker, show_id: str) -> None:
        if not worker.up.is_set():
            return

        async def end() -> None:
            with contextlib.suppress(MediaError):
                await worker.call("end_show", show=show_id)

        task = asyncio.ensure_future(end())
        worker.ending[show_id] = task
        task.add_done_callback(
            lambda t: worker.ending.pop(show_id, None) if worker.ending.get(show_id) is t else None
        )

    def owns(self, session_id: str) -> bool:
        return split_session_id(session_id) is not None

    async def end_viewer(self, show_id: str, session_id: str) -> None:
        """DELETE of a worker's viewer; 404 ``no_session`` when it is gone."""
        parsed = split_session_id(session_id)
        if parsed is None or parsed[0] >= len(self.workers):
            raise MediaError(404, "no_session", "no such session")
        worker = self.workers[parsed[0]]
        if not worker.up.is_set():
            raise MediaError(404, "no_session", "no such session")
        await worker.call("end", show=show_id, session=parsed[1])

    async def trickle(self, show_id: str, session_id: str, frag: str, if_match: str | None) -> str:
        """A trickle PATCH for a worker's viewer; the session's ETag."""
        parsed = split_session_id(session_id)
        if (
            parsed is None
            or parsed[0] >= len(self.workers)
            or not self.workers[parsed[0]].up.is_set()
        ):
            raise MediaError(404, "no_session", "no such session")
        reply = await self.workers[parsed[0]].call(
            "trickle", show=show_id, session=parsed[1], frag=frag, if_match=if_match
        )
        return str(reply["etag"])

    def show_ended(self, show_id: str) -> None:
        """The origin's broadcast is over: every worker ends the show's edge and its viewers."""
        for worker in self.workers:
            if worker.pipes.pop(show_id, None) is not None:
                self._end_show_on(worker, show_id)

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        """Stop every worker (their viewers' connections close), SIGKILL the ones that hang."""
        self.closing = True
        for worker in self.workers:
            if worker.up.is_set():
                with contextlib.suppress(MediaError):
                    await worker.call("stop", wait_s=STOP_TIMEOUT_S)
        await asyncio.wait(self._supervisors, timeout=STOP_TIMEOUT_S + 2)
        for task in self._supervisors:
            task.cancel()
        for worker in self.workers:  # a supervisor cancelled mid-restart may leave one
            for pipe in worker.lost():
                self.relay.close_pipe(pipe)
            await worker.reap(0)
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(self._collector)


class _WorkerMetrics:
    """``/metrics`` of the workers: their state and viewers from the pool's bookkeeping, and
    each worker's ``liveshop_media_X`` series as ``liveshop_media_worker_X{worker=…}``."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def describe(self) -> list[Metric]:
        return []  # names vary with what the workers report: not checked at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "liveshop_media_worker_up", "1 while the media worker serves viewers", labels=["worker"]
        )
        pid = GaugeMetricFamily(
            "liveshop_media_worker_pid", "process id of the media worker", labels=["worker"]
        )
        viewers = GaugeMetricFamily(
            "liveshop_media_worker_viewers",
            "viewers on the media worker",
            labels=["worker", "show"],
        )
        cpu = CounterMetricFamily(
            "liveshop_media_worker_cpu_seconds", "CPU time of the media worker", labels=["worker"]
        )
        restarts = CounterMetricFamily(
            "liveshop_media_worker_restarts", "times the worker was restarted", labels=["worker"]
        )
        forwarded: dict[str, Metric] = {}
        for worker in self.pool.workers:
            label = str(worker.index)
            up.add_metric([label], 1 if worker.up.is_set() else 0)
            pid.add_metric([label], worker.pid if worker.up.is_set() else 0)
            restarts.add_metric([label], worker.restarts)
            seconds = worker.cpu_seconds()
            if seconds is not None:
                cpu.add_metric([label], seconds)
            per_show: dict[str, int] = {}
            for show in worker.viewers.values():
                per_show[show] = per_show.get(show, 0) + 1
            for show, count in sorted(per_show.items()):
                viewers.add_metric([label, show], count)
            for name, kind, documentation, samples in worker.metrics:
                renamed = name.replace("liveshop_media_", "liveshop_media_worker_", 1)
                family = forwarded.get(renamed)
                if family is None:
                    family = forwarded[renamed] = Metric(renamed, documentation, kind)
                for sample_name, labels, value in samples:
                    family.add_sample(
                        sample_name.replace("liveshop_media_", "liveshop_media_worker_", 1),
                        {**labels, "worker": label},
                        value,
                    )
        yield from (up, pid, viewers, cpu, restarts)
        yield from forwarded.values()

"""What a scenario is: prepare in the parent, run in every worker, control the run, judge it.

The parent (``runner``) calls ``prepare`` once (create the show, the sale, tokens for the
host), forks ``--processes`` workers that each call ``run_worker`` on their share of the
crowd, runs ``control`` alongside them (start signals, a draw, a sale start), and finally
calls ``finish`` with the merged results to read the server's records and check invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp

from ..metrics import WorkerStats

if TYPE_CHECKING:
    from ..runner import Aggregate, Controller

# Shared flag slots (a multiprocessing double array): 0 is "stop now"; scenarios use the rest.
STOP = 0
GO = 1
SLOT_2 = 2
FLAG_SLOTS = 8


@dataclass
class WorkerEnv:
    """One worker process's view of the run."""

    index: int
    count: int
    url: str
    args: dict[str, Any]
    stats: WorkerStats
    flags: Any  # multiprocessing Array('d'), lock-free
    session: aiohttp.ClientSession
    rng: random.Random
    t0: float
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _events: dict[int, asyncio.Event] = field(default_factory=dict)
    _quiet: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    _poller: asyncio.Task[None] | None = None

    def share(self, total: int) -> range:
        """The indices (out of ``total``) this worker simulates."""
        return range(self.index, total, self.count)

    def client_rng(self, index: int) -> random.Random:
        """The random stream of client ``index``: with ``--seed`` the same crowd (who chats, buys,
        double-taps) whatever ``--processes`` is; without it, fresh randomness."""
        seed = self.args.get("seed")
        return random.Random(None if seed is None else f"{seed}:client:{index}")

    def flag(self, slot: int) -> float:
        return float(self.flags[slot])

    @property
    def stopping(self) -> bool:
        return bool(self.flags[STOP])

    def flag_event(self, slot: int) -> asyncio.Event:
        """An event set once the parent sets ``slot`` (or stop): one poller serves every client."""
        event = self._events.get(slot)
        if event is None:
            event = self._events[slot] = asyncio.Event()
        if self._poller is None:
            self._poller = self.spawn(self._poll_flags())
        return event

    async def _poll_flags(self, period: float = 0.005) -> None:
        while True:
            stop = bool(self.flags[STOP])
            for slot, event in list(self._events.items()):
                if stop or self.flags[slot]:
                    event.set()
            await asyncio.sleep(period)

    async def wait_flag(self, slot: int) -> float:
        """Wait until the parent sets ``slot`` (non-zero) or stop is requested; returns its value."""
        if not self.flags[slot] and not self.flags[STOP]:
            await self.flag_event(slot).wait()
        return float(self.flags[slot])

    async def wait_until_or_stop(
        self, monotonic_s: float, also: asyncio.Future[Any] | None = None
    ) -> None:
        """Sleep until ``monotonic_s``, or until stop is requested, or ``also`` completes."""
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.flag_event(STOP).wait())}
        if also is not None:
            waiters.add(also)
        delay = max(0.0, monotonic_s - time.monotonic())
        _done, pending = await asyncio.wait(
            waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED
        )
        for fut in pending:
            if fut is not also:
                fut.cancel()

    async def sleep_until(self, monotonic_s: float) -> None:
        """Sleep until a point on the (machine-wide) monotonic clock."""
        delay = monotonic_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def quiesce(self, counter: str, idle_s: float = 1.0, max_s: float = 30.0) -> None:
        """Wait until ``counter`` has stopped moving for ``idle_s`` (at most ``max_s``): a drain that
        lasts as long as deliveries are still arriving, so late messages count as late, not lost.
        One watcher per worker serves every client."""
        future = self._quiet.get(counter)
        if future is None:
            future = self._quiet[counter] = asyncio.ensure_future(
                self._watch_quiet(counter, idle_s, max_s)
            )
        await asyncio.shield(future)

    async def _watch_quiet(self, counter: str, idle_s: float, max_s: float) -> None:
        deadline = time.monotonic() + max_s
        last, still_since = self.stats.counters[counter], time.monotonic()
        while time.monotonic() < deadline and not self.stopping:
            await asyncio.sleep(0.1)
            now_value = self.stats.counters[counter]
            if now_value != last:
                last, still_since = now_value, time.monotonic()
            elif time.monotonic() - still_since >= idle_s:
                return

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Start a client task and keep a reference to it until it ends."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


class Scenario:
    """Base class; subclasses set ``name`` and override the four steps."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Scenario-specific CLI options."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args

    async def prepare(self, ctl: Controller) -> dict[str, Any]:
        """Set the stage over HTTP in the parent; the returned plan (picklable) goes to every worker."""
        return {}

    async def run_worker(self, plan: dict[str, Any], env: WorkerEnv) -> None:
        """Simulate this worker's share of the crowd; record into ``env.stats``."""
        raise NotImplementedError

    async def control(self, ctl: Controller, plan: dict[str, Any]) -> None:
        """Drive the run from the parent while workers run (default: nothing)."""

    async def finish(self, ctl: Controller, plan: dict[str, Any], agg: Aggregate) -> dict[str, Any]:
        """Report fields of this scenario (including ``invariants``) from the merged results."""
        return {}

    async def cleanup(self) -> None:
        """Release what ``prepare`` started (always called, even after a failure)."""

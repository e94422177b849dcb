"""Keep Python's full garbage collections from stalling a busy node.

A node holds ~100 long-lived objects per WebSocket connection. CPython runs a full
(generation-2) collection each time the old generation has grown by a quarter, and a full
collection walks every tracked object: at 5,000 connections that stopped the event loop for
0.3–0.5 s on the 2-core benchmark machine, in the middle of a join wave, so every viewer's chat
waited. After each full collection this policy freezes the survivors (``gc.freeze``): later
collections walk only what is newer, so their pauses follow the churn, not the audience size.

Frozen objects are still freed by reference counting; only reference cycles among them wait.
Connections that close after being frozen leave such cycles (≈ 50 objects each), so every
``thaw_s`` seconds the frozen set is handed back (``gc.unfreeze``) and collected at once: one
full-size pause per ``thaw_s`` instead of one per 25 % of growth, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import Gauge, Histogram

GC_PAUSE = Histogram(
    "liveshop_gc_pause_seconds",
    "Event-loop pauses of Python's garbage collector, by generation",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
GC_FROZEN = Gauge("liveshop_gc_frozen_objects", "Objects moved out of the collector's reach")
# Counted at scrape time: get_freeze_count walks the whole frozen list (≈ 1 % of a busy node's
# CPU when it ran after every full collection at 10,000 viewers).
GC_FROZEN.set_function(gc.get_freeze_count)


class GcPolicy:
    """Freeze after full collections; thaw every ``thaw_s`` seconds (0: leave the collector alone)."""

    def __init__(self, thaw_s: float) -> None:
        self.thaw_s = thaw_s
        self._started = 0.0
        self._pauses = [GC_PAUSE.labels(str(generation)) for generation in range(3)]

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self._pauses[generation].observe(time.perf_counter() - self._started)
        if generation == 2 and self.thaw_s > 0:
            gc.freeze()  # the survivors of a full collection are the node's long-lived state

    def install(self) -> None:
        gc.callbacks.append(self._on_gc)
        gc.collect()  # what survives start-up (modules, app, pools) is frozen from the start

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        gc.unfreeze()

    def thaw(self) -> None:
        """Reclaim the cycles among frozen objects; the survivors are frozen again (``_on_gc``)."""
        gc.unfreeze()
        gc.collect()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.thaw_s)
            self.thaw()


@contextlib.asynccontextmanager
async def collector_policy(thaw_s: float) -> AsyncIterator[None]:
    """The policy for the life of the block (the server's run); nothing when ``thaw_s`` is 0."""
    if thaw_s <= 0:
        yield
        return
    policy = GcPolicy(thaw_s)
    policy.install()
    thawing = asyncio.create_task(policy.run())
    try:
        yield
    finally:
        thawing.cancel()
        policy.uninstall()

"""Per-show timers, run by one node at a time (a Redis lease per show).

Every ~100 ms the leader of a show checks its sales; every 0.5 s it expires due reservations (``order.lua sweep``; safe on
several nodes at once, the lease only avoids duplicate work), announces sale countdowns
(every second), starts, stock left (at most every 200 ms, when it changed) and ends, draws
giveaways whose window closed, and pushes host stats every ~2 s while something changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..appkeys import REDIS
from ..insight import alerts
from ..logs import retry_failed
from ..redis.broker import publish
from ..redis.lua import Script
from . import auctions, group_buys, polls
from . import keys as ck
from .activity import active_shows
from .interactive import now_ms
from .lottery import draw_due
from .orders import settle_stale_payment
from .sales import countdown_event, ended_event, sales_of, started_event
from .scripts import ORDER
from .stats import show_stats

log = logging.getLogger("liveshop.commerce")

TICK_S = 0.1
STOCK_EVERY_S = 0.2
COUNTDOWN_EVERY_S = 1.0
STATS_EVERY_S = 2.0
SWEEP_EVERY_S = 0.5
DRAW_EVERY_S = 1.0
LEASE_MS = 3000
SWEEP_BATCH = 500
CONCURRENT_SHOWS = 32  # shows whose timers run at once (each uses one pooled Redis connection)
LEASE = Script(
    source="""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""
)


@dataclass
class ShowTimers:
    """What this node last announced for a show it leads."""

    phase: dict[str, str] = field(default_factory=dict)  # sale id → scheduled | live | ended
    left: dict[str, int] = field(default_factory=dict)
    countdown_at: dict[str, float] = field(default_factory=dict)
    stock_at: float = 0.0
    stats_at: float = 0.0
    sweep_at: float = 0.0
    draw_at: float = 0.0
    stats_sig: str = ""
    interactive: dict[str, Any] = field(default_factory=dict)  # id → what was last broadcast


class Ticker:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.node = "node-" + secrets.token_hex(4)
        self.shows: dict[str, ShowTimers] = {}
        self.limit = asyncio.Semaphore(CONCURRENT_SHOWS)
        self.stopped = False

    async def loop(self) -> None:
        while (
            not self.stopped
        ):  # a flag too: a cancel swallowed inside a Redis call must not keep us alive
            started = time.monotonic()
            try:
                failed = await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                retry_failed(log, "commerce tick failed")
                failed = True
            if failed:
                await asyncio.sleep(1)
            await asyncio.sleep(max(0.01, TICK_S - (time.monotonic() - started)))

    async def round(self) -> bool:
        """Tick every active show this node leads; True when some show's tick failed.

        A node may lead hundreds of shows, so the per-tick reads go out in two pipelines whatever
        the number of shows (leases with sale counts, then the sales), and shows tick side by side.
        """
        shows = await active_shows(self.app)
        for gone in self.shows.keys() - set(shows):
            del self.shows[gone]
        if not shows:
            return False
        async with self.app[REDIS].pipeline(transaction=False) as pipe:
            for show_id in shows:
                LEASE.queue(self.app, pipe, [ck.leader(show_id)], [self.node, LEASE_MS])
                pipe.hget(ck.seq(show_id), "sale")
                pipe.smembers(ck.interactive_live(show_id))  # open auctions, group buys, polls
            replies = await pipe.execute()
        counts = {}
        live: dict[str, set[str]] = {}
        for show_id, held, count, open_ids in zip(
            shows, replies[::3], replies[1::3], replies[2::3], strict=True
        ):
            if held:
                counts[show_id] = int(count or 0)
                live[show_id] = open_ids
            else:
                self.shows.pop(show_id, None)
        sales = await sales_of(self.app, counts)
        ticks = [
            self.tick(show_id, show_sales, live[show_id]) for show_id, show_sales in sales.items()
        ]
        return any(await asyncio.gather(*ticks))

    async def tick(
        self, show_id: str, sales: list[dict[str, Any]], live: set[str] | None = None
    ) -> bool:
        """One show's timers; True when they failed (logged; the other shows go on)."""
        timers = self.shows.setdefault(show_id, ShowTimers())
        async with self.limit:
            try:
                now = time.monotonic()
                if now - timers.sweep_at >= SWEEP_EVERY_S:
                    timers.sweep_at = now
                    await self.sweep(show_id)
                await self.sale_events(show_id, timers, sales, now)
                await self.interactive_events(show_id, timers, live or set())
                if now - timers.draw_at >= DRAW_EVERY_S:
                    timers.draw_at = now
                    await draw_due(self.app, show_id)
                if now - timers.stats_at >= STATS_EVERY_S:
                    timers.stats_at = now
                    await self.stats(show_id, timers)
            except asyncio.CancelledError:
                raise
            except Exception:
                retry_failed(log, "commerce tick failed for show %s", show_id)
                return True
            return False

    async def interactive_events(self, show_id: str, timers: ShowTimers, live: set[str]) -> None:
        """Auctions, group buys and polls: closes that are due, throttled progress broadcasts."""
        if not live:
            timers.interactive.clear()
            return
        now, memo = now_ms(self.app), timers.interactive
        by_kind: dict[str, list[str]] = {"a": [], "g": [], "q": []}
        for entity_id in sorted(live):
            match = ck.ID_RE.match(entity_id)
            if match and match.group(2) in by_kind:
                by_kind[match.group(2)].append(entity_id)
        await auctions.tick(self.app, show_id, by_kind["a"], memo, now)
        await group_buys.tick(self.app, show_id, by_kind["g"], memo, now)
        await polls.tick(self.app, show_id, by_kind["q"], memo, now)

    async def stats(self, show_id: str, timers: ShowTimers) -> None:
        """Host stats, pushed while something changes or someone watches."""
        stats = await show_stats(self.app, show_id)
        signature = json.dumps({k: v for k, v in stats.items() if k != "at"}, sort_keys=True)
        if signature != timers.stats_sig or stats["viewers"]:
            timers.stats_sig = signature
            await publish(self.app, show_id, {"type": "stats", **stats}, staff_only=True)
        await alerts.evaluate(self.app, show_id, stats)

    async def sweep(self, show_id: str) -> None:
        """Expire due reservations; settle payments whose node died."""
        while True:
            code, expired, *stale = await ORDER(
                self.app, ck.order_script_keys(show_id), ["sweep", SWEEP_BATCH]
            )
            for order_id in stale:
                await settle_stale_payment(self.app, show_id, order_id)
            if int(expired) < SWEEP_BATCH:
                return

    async def sale_events(
        self, show_id: str, timers: ShowTimers, sales: list[dict[str, Any]], now: float
    ) -> None:
        """Countdown every second, started/ended on a phase change, stock left when it changed."""
        stock_due = now - timers.stock_at >= STOCK_EVERY_S
        for sale in sales:
            sale_id, status = sale["id"], sale["status"]
            before = timers.phase.get(sale_id)
            timers.phase[sale_id] = status
            if status == "ended":
                # Each end is announced exactly once, by whichever node first sees it ended: also a
                # sale that ended before this leader ever saw it live (short sales, leader changes).
                if before != "ended" and await self.app[REDIS].hsetnx(
                    ck.sales(show_id), f"{sale_id}:end_announced", 1
                ):
                    await publish(self.app, show_id, ended_event(sale))
                continue
            if status == "scheduled":
                if now - timers.countdown_at.get(sale_id, 0) >= COUNTDOWN_EVERY_S:
                    timers.countdown_at[sale_id] = now
                    await publish(self.app, show_id, countdown_event(sale))
                continue
            if before == "scheduled":
                await publish(self.app, show_id, started_event(sale))
            if stock_due and timers.left.get(sale_id) != sale["left"]:
                timers.left[sale_id] = sale["left"]
                event = {
                    "type": "sale.stock",
                    "sale_id": sale_id,
                    "left": sale["left"],
                    "sold": sale["sold"],
                }
                await publish(self.app, show_id, event)
        if stock_due:
            timers.stock_at = now


async def ticker_ctx(app: web.Application) -> AsyncIterator[None]:
    ticker = Ticker(app)
    task = asyncio.create_task(ticker.loop(), name="commerce-ticker")
    yield
    ticker.stopped = True
    task.cancel()
    await asyncio.wait([task], timeout=3)

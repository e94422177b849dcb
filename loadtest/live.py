"""The live terminal view (rich): clients connected, rates, current p99, errors, progress.

Disabled with ``--quiet`` or when stderr is not a terminal; then nothing is drawn at all.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from . import metrics
from .scenarios.base import GO

if TYPE_CHECKING:
    from .runner import Controller


class LiveView:
    """Redraws at most 4 times a second from the parent's merged ticks."""

    def __init__(self, args: dict[str, Any], enabled: bool = True) -> None:
        self.args = args
        self.enabled = enabled and sys.stderr.isatty()
        self._live: Any = None
        self._last = 0.0

    def start(self, ctl: Controller) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.live import Live

        self._live = Live(
            self._render(ctl), console=Console(stderr=True), refresh_per_second=4, transient=False
        )
        self._live.start()

    def update(self, ctl: Controller) -> None:
        if not self._live or time.monotonic() - self._last < 0.25:
            return
        self._last = time.monotonic()
        self._live.update(self._render(ctl))

    def stop(self) -> None:
        if self._live:
            self._live.stop()
            self._live = None

    def _render(self, ctl: Controller) -> Any:
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        agg = ctl.agg
        elapsed = time.monotonic() - ctl.t0
        duration = float(self.args.get("duration") or 0)
        latest = max(agg.timeline) if agg.timeline else None
        rate_sent = rate_recv = 0
        p99 = None
        cpu = None
        if latest is not None:
            slot = agg.timeline[latest]
            rate_sent = slot["counters"].get("sent", 0)
            rate_recv = slot["counters"].get("received", 0)
            p99 = metrics.percentile_ms(slot["latency"], 99)
            previous = agg.timeline.get(latest - 1)
            if previous:
                cpu = (
                    sum(slot["cpu"].get(i, 0) - previous["cpu"].get(i, 0) for i in slot["cpu"])
                    * 100
                )
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan")
        table.add_column()
        table.add_row(
            "scenario", f"{self.args['scenario']}  ({ctl.phase}, {ctl.workers} workers, {ctl.url})"
        )
        table.add_row("connected", f"{int(agg.gauge_now('connected')):,}")
        table.add_row("sent/s", f"{rate_sent:,}")
        table.add_row("received/s", f"{rate_recv:,}")
        table.add_row("p99 (last s)", "-" if p99 is None else f"{p99:.1f} ms")
        errors = agg.live_counters.get("errors", 0) + agg.live_counters.get("connect_errors", 0)
        table.add_row("errors", f"[{'red' if errors else 'green'}]{errors:,}[/]")
        table.add_row("tester CPU", "-" if cpu is None else f"{cpu:.0f}% (of {ctl.workers * 100}%)")
        for key in ("reserved", "sold_out", "limit_reached", "frames", "entered"):
            if agg.live_counters.get(key):
                table.add_row(key, f"{agg.live_counters[key]:,}")
        go = float(ctl.flags[GO])
        load = max(0.0, time.monotonic() - go) if go else 0.0
        bar = ProgressBar(total=max(duration, 1), completed=min(load, duration), width=40)
        table.add_row("progress", bar)
        table.add_row(
            "elapsed",
            f"load {min(load, duration):.1f} s / {duration:.0f} s (run {elapsed:.1f} s)"
            if go
            else f"joining ({elapsed:.1f} s)",
        )
        return Panel(table, title="liveshop load test", border_style="blue")

"""HDR histograms and counters that survive a trip between processes.

Latencies are recorded in microseconds into HdrHistogram (1 µs .. 10 min, 3 significant
digits). Workers ship histograms as their compressed HdrHistogram encoding; the parent
merges them with ``decode_and_add`` so percentiles are exact over the whole crowd, never an
average of per-worker percentiles.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 600_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def new_histogram() -> HdrHistogram:
    """An empty histogram for values in microseconds."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_us(hist: HdrHistogram, value_us: float) -> None:
    """Record one value, clamped into the histogram's range."""
    hist.record_value(int(min(max(value_us, LOWEST_US), HIGHEST_US)))


def encode(hist: HdrHistogram) -> bytes:
    """Compressed wire form (empty bytes for an empty histogram)."""
    return hist.encode() if hist.get_total_count() else b""


def merge_into(target: HdrHistogram, encoded: bytes) -> None:
    """Add an encoded histogram into ``target``."""
    if encoded:
        target.decode_and_add(encoded)


def summary_ms(hist: HdrHistogram) -> dict[str, float | None]:
    """p50/p90/p99/p999/max in milliseconds (None when nothing was recorded)."""
    if not hist.get_total_count():
        return {**{name: None for name in PERCENTILES}, "max": None}
    out: dict[str, float | None] = {
        name: round(hist.get_value_at_percentile(pct) / 1000, 3)
        for name, pct in PERCENTILES.items()
    }
    out["max"] = round(hist.get_max_value() / 1000, 3)
    return out


def percentile_ms(hist: HdrHistogram, pct: float) -> float | None:
    """One percentile in milliseconds, or None for an empty histogram."""
    if not hist.get_total_count():
        return None
    return round(hist.get_value_at_percentile(pct) / 1000, 3)


def distribution_ms(hist: HdrHistogram, buckets: int = 40) -> list[tuple[float, int]]:
    """(upper bound ms, count) over log-spaced buckets, for the HTML histogram plot."""
    total = hist.get_total_count()
    if not total:
        return []
    low = max(hist.get_min_value(), 1)
    high = max(hist.get_max_value(), low + 1)
    ratio = (high / low) ** (1 / buckets)
    bounds = [low * ratio ** (i + 1) for i in range(buckets)]
    out: list[tuple[float, int]] = []
    previous = 0
    for bound in bounds:
        cumulative = _count_at_or_below(hist, bound)
        out.append((round(bound / 1000, 3), cumulative - previous))
        previous = cumulative
    return out


def _count_at_or_below(hist: HdrHistogram, value: float) -> int:
    count = 0
    for item in hist.get_recorded_iterator():
        if item.value_iterated_to > value:
            break
        count += item.count_at_value_iterated_to
    return count


class WorkerStats:
    """Everything one worker measures: named histograms (µs), counters, gauges and free-form extras.

    ``tick()`` returns the delta since the previous tick (counters and the interval latency
    histogram) so the parent can draw latency and rates over time.
    """

    def __init__(self) -> None:
        self.hists: dict[str, HdrHistogram] = {}
        self.counters: Counter[str] = Counter()
        self.gauges: dict[str, float] = {}
        self.extra: dict[str, Any] = {}
        self._interval: HdrHistogram = new_histogram()
        self._last_counters: Counter[str] = Counter()
        # Latencies pending recording, pre-bucketed to 11 significant bits (finer than the
        # histogram's 3 decimal digits): one dict update per sample instead of a Python-level
        # HdrHistogram.record_value, which costs ~2.5 µs and dominated the receive path.
        self._pending: dict[int, int] = {}

    def hist(self, name: str) -> HdrHistogram:
        """The named histogram, created on first use."""
        found = self.hists.get(name)
        if found is None:
            found = self.hists[name] = new_histogram()
        return found

    def latency_us(self, value_us: float) -> None:
        """Record one end-to-end latency (the report's ``latency_ms``)."""
        value = int(value_us)
        if value < LOWEST_US:
            value = LOWEST_US
        shift = value.bit_length() - 11
        if shift > 0:
            value = (value >> shift) << shift
        pending = self._pending
        pending[value] = pending.get(value, 0) + 1

    def flush(self) -> None:
        """Move pending latencies into the total and interval histograms."""
        if not self._pending:
            return
        total, interval = self.hist("latency"), self._interval
        for value, count in self._pending.items():
            value = min(value, HIGHEST_US)
            total.record_value(value, count)
            interval.record_value(value, count)
        self._pending = {}

    def add(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def tick(self) -> dict[str, Any]:
        """Counters' delta, gauges and the interval latency histogram since the last tick."""
        self.flush()
        delta = Counter(self.counters)
        delta.subtract(self._last_counters)
        self._last_counters = Counter(self.counters)
        interval = encode(self._interval)
        self._interval = new_histogram()
        return {
            "counters": {k: v for k, v in delta.items() if v},
            "gauges": dict(self.gauges),
            "latency": interval,
        }

    def final(self) -> dict[str, Any]:
        """Totals to ship to the parent at the end."""
        self.flush()
        return {
            "hists": {name: encode(h) for name, h in self.hists.items()},
            "counters": dict(self.counters),
            "gauges": dict(self.gauges),
            "extra": self.extra,
        }

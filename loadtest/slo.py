"""Service-level objectives given on the command line, e.g. ``--slo 'p99<250,errors<0.1%'``.

Each term is ``METRIC OP NUMBER[%]`` with OP one of ``< <= > >=``. Latency metrics are in
milliseconds; ``errors`` and ``loss`` are percentages. A failed SLO makes the exit status 1.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_TERM = re.compile(r"^\s*([a-z0-9_.]+)\s*(<=|>=|<|>)\s*([0-9]*\.?[0-9]+)\s*(%?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip


def _latency(name: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda report: (report.get("latency_ms") or {}).get(name)


def _errors_pct(report: dict[str, Any]) -> float | None:
    attempts = max(int(report.get("attempts") or 0), 1)
    return (
        100.0 * (int(report.get("connect_errors") or 0) + int(report.get("errors") or 0)) / attempts
    )


def _loss_pct(report: dict[str, Any]) -> float | None:
    expected = int(report.get("expected") or 0)
    return 100.0 * int(report.get("lost") or 0) / expected if expected else 0.0


def _media(name: str, sub: str | None = None) -> Callable[[dict[str, Any]], float | None]:
    def get(report: dict[str, Any]) -> float | None:
        media = report.get("media") or {}
        value = media.get(name)
        return value.get(sub) if sub and isinstance(value, dict) else value

    return get


METRICS: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "p50": _latency("p50"),
    "p90": _latency("p90"),
    "p99": _latency("p99"),
    "p999": _latency("p999"),
    "max": _latency("max"),
    "errors": _errors_pct,
    "loss": _loss_pct,
    "deliveries_per_s": lambda r: r.get("deliveries_per_s"),
    "ttff_p95": _media("ttff_ms", "p95"),
    "fps": _media("fps_avg"),
    "media_loss": _media("loss_pct"),
    "attempts_per_s": lambda r: (r.get("sale") or {}).get("attempts_per_s"),
}


@dataclass(frozen=True)
class Slo:
    """One objective: ``metric op threshold``."""

    metric: str
    op: str
    threshold: float
    text: str

    def evaluate(self, report: dict[str, Any]) -> dict[str, Any]:
        """{slo, value, ok}; a metric the run did not produce fails (it cannot be shown to hold)."""
        value = METRICS[self.metric](report)
        ok = value is not None and _OPS[self.op](float(value), self.threshold)
        return {"slo": self.text, "value": value, "ok": bool(ok)}


def parse_slos(spec: str | None) -> list[Slo]:
    """Parse ``'p99<250,errors<0.1%'``; raises ValueError with a readable message."""
    if not spec:
        return []
    out = []
    for raw in spec.split(","):
        if not raw.strip():
            continue
        match = _TERM.match(raw)
        if not match:
            raise ValueError(f"bad SLO term {raw.strip()!r}: expected e.g. p99<250 or errors<0.1%")
        metric, op, number, _percent = match.groups()
        if metric not in METRICS:
            raise ValueError(f"unknown SLO metric {metric!r}; known: {', '.join(sorted(METRICS))}")
        out.append(Slo(metric, op, float(number), raw.strip()))
    return out


def evaluate_slos(slos: list[Slo], report: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate every objective against a finished report."""
    return [slo.evaluate(report) for slo in slos]

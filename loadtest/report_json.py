"""The JSON report: one object, every field documented in docs/loadtest.md."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import metrics
from .slo import evaluate_slos, parse_slos
from .version import __version__

if TYPE_CHECKING:
    from .runner import Controller

# Options that describe the run itself rather than the crowd: left out of ``params``.
_NOT_PARAMS = {"json", "html", "quiet", "func", "server_args"}


def build_report(
    args: dict[str, Any],
    ctl: Controller,
    extra: dict[str, Any],
    duration: float,
    started_wall: float,
    server_stats: dict[str, float] | None,
) -> dict[str, Any]:
    """Merge the common measurements with the scenario's own fields, then judge SLOs and invariants."""
    agg = ctl.agg
    c = agg.counters
    latency = agg.hist("latency")
    sent = int(c.get("sent", 0))
    received = int(c.get("received", 0))
    expected = int(extra.pop("expected", c.get("expected", 0)))
    lost = max(0, expected - received) if expected else 0
    tester_cpu = sum(agg.worker_cpu_s)
    processes = len(agg.worker_cpu_s) or ctl.workers
    loop_lag = agg.hist("loop_lag")
    report: dict[str, Any] = {
        "scenario": args["scenario"],
        "params": {k: v for k, v in sorted(args.items()) if k not in _NOT_PARAMS},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_wall)),
        "duration_s": round(duration, 3),
        "url": ctl.url,
        "clients": int(c.get("clients", 0)),
        "peak_connected": int(max((row["connected"] for row in agg.timeline_rows()), default=0)),
        "connect_errors": int(c.get("connect_errors", 0)),
        "errors": int(c.get("errors", 0)),
        "error_codes": {
            k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("error:")
        },
        "attempts": int(c.get("attempts", 0) or c.get("clients", 0) + sent),
        "latency_ms": metrics.summary_ms(latency),
        "latency_samples": int(latency.get_total_count()),
        "sent": sent,
        "received": received,
        "expected": expected,
        "lost": lost,
        "dropped": int(c.get("skipped", 0)),
        "deliveries_per_s": round(received / duration, 1) if duration else 0.0,
        "timeline": agg.timeline_rows(),
        "latency_histogram_ms": metrics.distribution_ms(latency),
        "tester": {
            "processes": processes,
            "loop": "uvloop" if _has_uvloop() else "asyncio",
            "cpu_s": round(tester_cpu, 3),
            "cpu_pct": round(100 * tester_cpu / (duration * processes), 1) if duration else 0.0,
            "loop_lag_ms": metrics.summary_ms(loop_lag),
            "saturated": False,
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "version": __version__,
        },
    }
    # A tester whose workers were >90% busy in some second or whose loop woke >100 ms late (p99)
    # measured itself, not the server: say so loudly.
    lag_p99 = metrics.percentile_ms(loop_lag, 99) or 0.0
    peak = max((row["tester_cpu_pct"] or 0.0 for row in report["timeline"]), default=0.0) / max(
        processes, 1
    )
    report["tester"]["peak_cpu_pct"] = round(peak, 1)
    report["tester"]["saturated"] = peak > 90 or lag_p99 > 100
    invariants = extra.pop("invariants", {})
    report.update(extra)
    clients, failed = int(c.get("clients", 0)), int(c.get("clients_failed", 0))
    report["clients_failed"] = failed
    report["invariants"] = {
        "clients_connected": {
            "ok": failed == 0 and clients > 0,
            "detail": f"{clients - failed} of {clients} simulated clients joined "
            f"({failed} gave up; {int(c.get('connect_errors', 0))} failed attempts)",
        },
        "no_server_errors": {
            "ok": c.get("server_errors", 0) == 0,
            "detail": f"{c.get('server_errors', 0)} answers were 5xx/internal errors",
        },
        **invariants,
    }
    media = report.get("media")
    if server_stats is not None:
        report["server"] = server_stats
    if isinstance(media, dict) and media.get("packets_forwarded"):
        # The spawned server's whole process tree (main, media workers) from /proc; else the
        # CPU every server process reports on /metrics.
        by_process = media.get("server_cpu_s_by_process") or {}
        cpu_s = server_stats["cpu_s"] if server_stats else sum(by_process.values())
        if cpu_s:
            media["server_us_per_packet"] = round(1e6 * cpu_s / media["packets_forwarded"], 2)
    if agg.crashes:
        report["crashes"] = agg.crashes
        report["invariants"]["workers_completed"] = {
            "ok": False,
            "detail": "; ".join(agg.crashes)[:2000],
        }
    report["notes"] = ctl.notes
    report["slos"] = evaluate_slos(parse_slos(args.get("slo")), report)
    checks_ok = all(v["ok"] for v in report["invariants"].values()) and all(
        s["ok"] for s in report["slos"]
    )
    # A saturated tester is never "OK": the checks may have held, but the numbers measure the
    # tester (or a machine shared with other work), so the run proves nothing about the server.
    saturated = report["tester"]["saturated"]
    report["verdict"] = "fail" if not checks_ok else "inconclusive" if saturated else "pass"
    report["ok"] = report["verdict"] == "pass"
    return report


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401

        return True
    except ImportError:
        return False


def write_json(report: dict[str, Any], path: str | Path) -> None:
    """Write the report, pretty-printed, atomically."""
    target = Path(path)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(target)

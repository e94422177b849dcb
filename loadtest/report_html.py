"""The HTML report: one self-contained file a person can hand to their team.

At the top the verdict (PASS, FAIL, or INCONCLUSIVE when the tester itself was saturated, as a
banner that cannot be missed), then every objective with its target, measured value and
pass/fail, the invariants, readable tables (no raw JSON) and the plots. Plots are Plotly figures
(a well-kept plotting library: round ticks, units on every axis, hover values, full page width);
plotly.js is inlined once, so the file opens offline, in a CI artifact or attached to an issue.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .slo import parse_slos

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c"]
# Units of the objectives' metrics (docs/loadtest.md "--slo").
SLO_UNITS = {
    "p50": "ms", "p90": "ms", "p99": "ms", "p999": "ms", "max": "ms", "errors": "%", "loss": "%",
    "deliveries_per_s": "/s", "ttff_p95": "ms", "fps": "fps", "media_loss": "%", "attempts_per_s": "/s",
}  # fmt: skip
PLAIN_TICKS = {"automargin": True, "exponentformat": "none", "separatethousands": True}
OP_TEXT = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}


def verdict(report: dict[str, Any]) -> str:
    """``pass``, ``fail`` or ``inconclusive`` (every check held but the tester was saturated)."""
    if report.get("verdict"):
        return str(report["verdict"])
    checks_ok = all(v["ok"] for v in report.get("invariants", {}).values()) and all(
        s["ok"] for s in report.get("slos", [])
    )
    if not checks_ok:
        return "fail"
    return "inconclusive" if (report.get("tester") or {}).get("saturated") else "pass"


def fmt(value: Any, unit: str = "") -> str:
    """Numbers as a person reads them: thousands separated, at most 3 significant decimals."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    else:
        text = str(value)
    return f"{text} {unit}".strip() if unit and unit != "/s" else text + (unit or "")


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(
            f"{k} {fmt(v)}" for k, v in value.items() if not isinstance(v, list | dict)
        )
    if isinstance(value, list):
        return f"{len(value)} items"
    return fmt(value)


def _table(rows: list[tuple[str, Any]], cls: str = "kv") -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_cell(v))}</td></tr>" for k, v in rows
    )
    return f'<table class="{cls}">{body}</table>'


def _section_rows(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """A scenario's dict as rows: nested summaries flattened, long per-item lists left to plots."""
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict | list | tuple):
            continue
        label = key.replace("_", " ")
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            rows.extend((f"{label} · {k.replace('_', ' ')}", v) for k, v in value.items())
        else:
            rows.append((label, value))
    return rows


def slo_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each objective with its metric, target (with unit), measured value and verdict."""
    rows = []
    for s in report.get("slos", []):
        try:
            parsed = parse_slos(s["slo"])[0]
            unit = SLO_UNITS.get(parsed.metric, "")
            target = f"{OP_TEXT[parsed.op]} {fmt(parsed.threshold, unit)}"
            metric = parsed.metric
        except (ValueError, IndexError):
            unit, target, metric = "", s["slo"], s["slo"]
        rows.append(
            {
                "metric": metric,
                "target": target,
                "measured": fmt(s.get("value"), unit),
                "ok": s["ok"],
            }
        )
    return rows


# ---------------------------------------------------------------- plots (Plotly)


def _figure(
    title: str, traces: list[dict[str, Any]], x_title: str, y_title: str, **layout: Any
) -> dict[str, Any]:
    return {
        "data": traces,
        "layout": {
            "title": {"text": title, "x": 0, "font": {"size": 15}},
            # Plain numbers with thousands separators: ticks read 0, 200, 400 or 1,000, never 1e+03.
            "xaxis": {"title": {"text": x_title}, "rangemode": "tozero", **PLAIN_TICKS},
            "yaxis": {"title": {"text": y_title}, "rangemode": "tozero", **PLAIN_TICKS},
            "height": 320,
            "margin": {"l": 60, "r": 20, "t": 44, "b": 50},
            "legend": {"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
            "template": "plotly_white",
            "hovermode": "x unified",
            **layout,
        },
    }


def _line(
    name: str, points: list[tuple[float, float | None]], color: int, unit: str
) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines+markers" if len(points) < 40 else "lines",
        "name": name,
        "x": [x for x, _ in points],
        "y": [y for _, y in points],
        "line": {"color": COLORS[color % len(COLORS)], "width": 2},
        "hovertemplate": f"%{{y:,.3~f}} {unit}<extra>{html.escape(name)}</extra>",
    }


def _bar(name: str, labels: list[Any], values: list[float], unit: str) -> dict[str, Any]:
    return {
        "type": "bar",
        "name": name,
        "x": labels,
        "y": values,
        "marker": {"color": COLORS[0]},
        "hovertemplate": f"%{{x}}: %{{y:,}} {unit}<extra></extra>",
    }


def _has(points: list[tuple[float, float | None]]) -> bool:
    return any(y for _, y in points)


def figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The plots that have data for this run (an HTTP run has no 'connected clients', say)."""
    timeline = report.get("timeline", [])
    out: list[dict[str, Any]] = []
    p50 = [(r["t"], r.get("p50_ms")) for r in timeline]
    p99 = [(r["t"], r.get("p99_ms")) for r in timeline]
    if _has(p99):
        out.append(
            _figure(
                "Latency per second",
                [_line("p50", p50, 0, "ms"), _line("p99", p99, 1, "ms")],
                "time since start (s)",
                "latency (ms)",
            )
        )
    hist = report.get("latency_histogram_ms", [])
    if hist:
        out.append(
            _figure(
                "Latency distribution",
                [_bar("samples", [round(u, 3) for u, _ in hist], [c for _, c in hist], "samples")],
                "latency (ms, log scale)",
                "samples",
                xaxis={
                    "type": "log",
                    "title": {"text": "latency (ms, log scale)"},
                    **PLAIN_TICKS,
                },
                hovermode="closest",
            )
        )
    connected = [(r["t"], r.get("connected")) for r in timeline]
    if _has(connected):
        out.append(
            _figure(
                "Connected clients",
                [_line("connected", connected, 0, "clients")],
                "time since start (s)",
                "clients",
            )
        )
    rates = {
        "sent": [(r["t"], r.get("sent")) for r in timeline],
        "received": [(r["t"], r.get("received")) for r in timeline],
        "errors": [(r["t"], r.get("errors")) for r in timeline],
    }
    if any(_has(v) for v in rates.values()):
        out.append(
            _figure(
                "Messages and errors per second",
                [_line(k, v, i, "/s") for i, (k, v) in enumerate(rates.items()) if _has(v)],
                "time since start (s)",
                "per second",
            )
        )
    cpu = [(r["t"], r.get("tester_cpu_pct")) for r in timeline]
    if _has(cpu):
        processes = (report.get("tester") or {}).get("processes") or 1
        out.append(
            _figure(
                "Tester CPU (all workers)",
                [_line("tester CPU", cpu, 3, "%")],
                "time since start (s)",
                f"% of one core ({processes} worker processes: {100 * processes}% = all busy)",
            )
        )
    sale = report.get("sale") or {}
    if sale.get("outcomes"):
        items = sorted(sale["outcomes"].items(), key=lambda kv: -kv[1])
        out.append(
            _figure(
                "Flash sale: buy answers",
                [_bar("answers", [k for k, _ in items], [v for _, v in items], "answers")],
                "outcome",
                "answers",
                hovermode="closest",
            )
        )
    if sale.get("reserved_over_time"):
        out.append(
            _figure(
                "Flash sale: units reserved",
                [_line("reserved", [(t, n) for t, n in sale["reserved_over_time"]], 2, "units")],
                "time after the sale start (ms)",
                "units reserved (cumulative)",
            )
        )
    media = report.get("media") or {}
    viewers = media.get("per_viewer") or []
    if viewers:
        idx = list(range(1, len(viewers) + 1))
        out.append(
            _figure(
                "Media: time to first frame per viewer",
                [_bar("TTFF", idx, [v.get("ttff_ms") or 0 for v in viewers], "ms")],
                "viewer",
                "time to first frame (ms)",
                hovermode="closest",
            )
        )
        out.append(
            _figure(
                "Media: frames per second per viewer",
                [_bar("fps", idx, [v.get("fps") or 0 for v in viewers], "fps")],
                "viewer",
                "frames per second",
                hovermode="closest",
            )
        )
    return out


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fff}
main{padding:1.2rem 2rem;max-width:none}
h1{font-size:1.5rem;margin:.2rem 0 .8rem} h2{font-size:1.15rem;margin:1.6rem 0 .5rem}
.banner{padding:.8rem 1rem;border-radius:8px;font-weight:700;font-size:1.1rem;margin:.6rem 0}
.banner.pass{background:#dcfce7;border:2px solid #16a34a}
.banner.fail{background:#fee2e2;border:2px solid #dc2626}
.banner.inconclusive,.banner.saturated{background:#fef3c7;border:2px solid #d97706}
.banner small{display:block;font-weight:400;font-size:.9rem;margin-top:.2rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:14px}
th,td{border:1px solid #e5e7eb;padding:5px 10px;text-align:left;vertical-align:top}
thead th{background:#f3f4f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass-cell{color:#15803d;font-weight:700} .fail-cell{color:#b91c1c;font-weight:700}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:0 2rem}
.plots{display:grid;grid-template-columns:minmax(0,1fr);gap:1rem}
.plot{border:1px solid #e5e7eb;border-radius:8px;padding:4px;min-width:0}
details pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}
"""


def render(report: dict[str, Any]) -> str:
    """The whole HTML document for one report."""
    v = verdict(report)
    tester = report.get("tester") or {}
    scenario = html.escape(str(report.get("scenario", "?")))
    word = {"pass": "PASS", "fail": "FAILED", "inconclusive": "INCONCLUSIVE"}[v]
    banners = [
        f'<div class="banner {v}" id="verdict" data-verdict="{v}">{word}'
        + {
            "pass": "<small>every invariant and objective held</small>",
            "fail": "<small>an invariant or an objective failed (marked below)</small>",
            "inconclusive": "<small>every check held, but the tester was saturated: the numbers measure the tester, not the server</small>",
        }[v]
        + "</div>"
    ]
    if tester.get("saturated"):
        lag = (tester.get("loop_lag_ms") or {}).get("p99")
        banners.append(
            '<div class="banner saturated" id="saturated">TESTER SATURATED'
            f"<small>event-loop lag p99 {fmt(lag, 'ms')}, peak CPU {fmt(tester.get('peak_cpu_pct'), '%')} of a worker "
            "(limits: 100 ms, 90 %). Run with more --processes, fewer clients, or on a machine of its own.</small></div>"
        )
    slo_table = "".join(
        f"<tr><th>{html.escape(r['metric'])}</th><td>{html.escape(r['target'])}</td>"
        f'<td class="num">{html.escape(r["measured"])}</td>'
        f'<td class="{"pass-cell" if r["ok"] else "fail-cell"}">{"pass" if r["ok"] else "FAIL"}</td></tr>'
        for r in slo_rows(report)
    )
    inv_table = "".join(
        f"<tr><th>{html.escape(k.replace('_', ' '))}</th>"
        f'<td class="{"pass-cell" if x["ok"] else "fail-cell"}">{"pass" if x["ok"] else "FAIL"}</td>'
        f"<td>{html.escape(x['detail'])}</td></tr>"
        for k, x in report.get("invariants", {}).items()
    )
    lat = report.get("latency_ms") or {}
    lat_table = (
        "<table><thead><tr>"
        + "".join(f"<th>{n}</th>" for n in ("p50", "p90", "p99", "p99.9", "max", "samples"))
        + "</tr></thead><tbody><tr>"
        + "".join(
            f'<td class="num">{fmt(lat.get(k), "ms")}</td>'
            for k in ("p50", "p90", "p99", "p999", "max")
        )
        + f'<td class="num">{fmt(report.get("latency_samples"))}</td></tr></tbody></table>'
    )
    run_rows: list[tuple[str, Any]] = [
        ("scenario", report.get("scenario")),
        ("started (UTC)", report.get("started_at")),
        ("duration", fmt(report.get("duration_s"), "s")),
        ("target", report.get("url")),
        (
            "clients / peak connected",
            f"{fmt(report.get('clients'))} / {fmt(report.get('peak_connected'))}",
        ),
        (
            "connect errors / errors",
            f"{fmt(report.get('connect_errors'))} / {fmt(report.get('errors'))}",
        ),
        (
            "sent / received / expected",
            f"{fmt(report.get('sent'))} / {fmt(report.get('received'))} / {fmt(report.get('expected'))}",
        ),
        ("lost / dropped (announced)", f"{fmt(report.get('lost'))} / {fmt(report.get('dropped'))}"),
        ("deliveries per second", fmt(report.get("deliveries_per_s"))),
    ]
    if report.get("error_codes"):
        run_rows.append(("error codes", report["error_codes"]))
    tester_rows = [
        ("worker processes", tester.get("processes")),
        ("event loop", tester.get("loop")),
        (
            "CPU",
            f"{fmt(tester.get('cpu_s'), 's')} ({fmt(tester.get('cpu_pct'), '%')} of the workers; peak {fmt(tester.get('peak_cpu_pct'), '%')})",
        ),
        ("event-loop lag", tester.get("loop_lag_ms")),
        ("saturated", tester.get("saturated")),
        (
            "cores / Python / tester version",
            f"{tester.get('cores')} / {tester.get('python')} / {tester.get('version')}",
        ),
    ]
    sections = [
        f"<div><h2>Run</h2>{_table(run_rows)}</div>",
        f"<div><h2>Tester</h2>{_table(tester_rows)}</div>",
    ]
    if report.get("server"):
        sections.append(
            f"<div><h2>Server (spawned)</h2>{_table(_section_rows(report['server']))}</div>"
        )
    if report.get("machine"):
        sections.append(f"<div><h2>Machine</h2>{_table(_section_rows(report['machine']))}</div>")
    for key, title in (
        ("chat", "Chat"),
        ("likes", "Likes"),
        ("sale", "Flash sale"),
        ("media", "Media"),
        ("lottery", "Giveaway"),
    ):
        if isinstance(report.get(key), dict) and report[key]:
            sections.append(f"<div><h2>{title}</h2>{_table(_section_rows(report[key]))}</div>")
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in report.get("notes", []) or [])
    crashes = "".join(f"<li>{html.escape(str(n))}</li>" for n in report.get("crashes", []) or [])
    figs = figures(report)
    plots = "".join(f'<div class="plot" id="plot-{i}"></div>' for i in range(len(figs)))
    fig_json = json.dumps(figs, default=str).replace("</", "<\\/")
    params = html.escape(json.dumps(report.get("params", {}), indent=1, default=str))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>liveshop load test: {scenario} — {word}</title>
<style>{CSS}</style>
<script>{_plotly_js()}</script>
</head><body><main>
<h1>liveshop load test — {scenario}</h1>
{"".join(banners)}
<h2>Objectives</h2>
<table id="slos"><thead><tr><th>metric</th><th>target</th><th>measured</th><th>result</th></tr></thead>
<tbody>{slo_table or '<tr><td colspan="4">none given (add e.g. --slo "p99<250,errors<0.1%")</td></tr>'}</tbody></table>
<h2>Invariants</h2>
<table id="invariants"><thead><tr><th>invariant</th><th>result</th><th>detail</th></tr></thead>
<tbody>{inv_table or '<tr><td colspan="3">none for this scenario</td></tr>'}</tbody></table>
<h2>Latency</h2>{lat_table}
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
{f"<h2>Crashes</h2><ul>{crashes}</ul>" if crashes else ""}
<h2>Plots</h2>
<div class="plots">{plots or "<p>no time series in this run</p>"}</div>
<div class="grid">{"".join(sections)}</div>
<details><summary>Parameters</summary><pre>{params}</pre></details>
</main>
<script>
const figures = {fig_json};
figures.forEach((f, i) => Plotly.newPlot("plot-" + i, f.data, f.layout, {{responsive: true, displaylogo: false}}));
</script>
</body></html>
"""


def write_html(report: dict[str, Any], path: str | Path) -> None:
    """Write the self-contained HTML report."""
    Path(path).write_text(render(report))

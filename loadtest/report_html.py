"""The HTML report: one self-contained file, plots drawn as hand-written inline SVG.

No scripts, no fonts, no network: the file opens the same offline, in a CI artifact or
attached to an issue.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

W, H = 640, 220
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 24, 32
COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c"]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k" if abs(value) < 1_000_000 else f"{value / 1e6:.1f}M"
    return f"{value:.3g}"


def line_chart(
    title: str, series: dict[str, list[tuple[float, float | None]]], x_label: str, y_label: str
) -> str:
    """A line chart of one or more (x, y) series; None values break the line."""
    points = [(x, y) for s in series.values() for x, y in s if y is not None]
    if not points:
        return f"<figure><figcaption>{html.escape(title)}</figcaption><p class=empty>no data</p></figure>"
    x_max = max(x for x, _ in points) or 1
    x_min = min(x for x, _ in points)
    y_max = max(y for _, y in points) * 1.1 or 1
    span_x = (x_max - x_min) or 1

    def sx(x: float) -> float:
        return PAD_L + (x - x_min) / span_x * (W - PAD_L - PAD_R)

    def sy(y: float) -> float:
        return H - PAD_B - y / y_max * (H - PAD_T - PAD_B)

    parts = [_axes(x_min, x_max, y_max, x_label, y_label, sx, sy)]
    for i, (name, data) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path, pen_down = [], False
        for x, y in data:
            if y is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{sx(x):.1f},{sy(y):.1f}")
            pen_down = True
        parts.append(
            f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="1.8"/>'
        )
        parts.append(
            f'<text x="{PAD_L + 8 + 110 * i}" y="{PAD_T - 8}" fill="{color}" font-size="12">{html.escape(name)}</text>'
        )
    return _figure(title, parts)


def bar_chart(
    title: str, bars: list[tuple[str, float]], y_label: str, log_labels: bool = False
) -> str:
    """Vertical bars with category labels (every few labels shown when crowded)."""
    if not bars:
        return f"<figure><figcaption>{html.escape(title)}</figcaption><p class=empty>no data</p></figure>"
    y_max = max(v for _, v in bars) * 1.1 or 1
    inner = W - PAD_L - PAD_R
    width = inner / len(bars)
    step = max(1, len(bars) // 10)

    def sy(y: float) -> float:
        return H - PAD_B - y / y_max * (H - PAD_T - PAD_B)

    parts = [_axes(0, 1, y_max, "", y_label, lambda x: PAD_L + x * inner, sy, x_ticks=False)]
    for i, (label, value) in enumerate(bars):
        x = PAD_L + i * width
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{sy(value):.1f}" width="{max(width - 2, 1):.1f}" '
            f'height="{H - PAD_B - sy(value):.1f}" fill="{COLORS[0]}"><title>{html.escape(label)}: {value:g}</title></rect>'
        )
        if i % step == 0:
            parts.append(
                f'<text x="{x + width / 2:.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">{html.escape(label)}</text>'
            )
    return _figure(title, parts)


def _axes(
    x_min: float,
    x_max: float,
    y_max: float,
    x_label: str,
    y_label: str,
    sx: Any,
    sy: Any,
    x_ticks: bool = True,
) -> str:
    out = [
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#888"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#888"/>',
        f'<text x="12" y="{(H) / 2}" font-size="11" transform="rotate(-90 12 {H / 2})" text-anchor="middle">{html.escape(y_label)}</text>',
        f'<text x="{(W + PAD_L) / 2}" y="{H - 4}" font-size="11" text-anchor="middle">{html.escape(x_label)}</text>',
    ]
    for i in range(5):
        y = y_max / 1.1 * i / 4
        out.append(
            f'<text x="{PAD_L - 4}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end">{_fmt(y)}</text>'
        )
        out.append(
            f'<line x1="{PAD_L}" y1="{sy(y):.1f}" x2="{W - PAD_R}" y2="{sy(y):.1f}" stroke="#eee"/>'
        )
    if x_ticks:
        for i in range(6):
            x = x_min + (x_max - x_min) * i / 5
            out.append(
                f'<text x="{sx(x):.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">{_fmt(x)}</text>'
            )
    return "".join(out)


def _figure(title: str, parts: list[str]) -> str:
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif">'
        + "".join(parts)
        + "</svg></figure>"
    )


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_plain(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


def _plain(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def render(report: dict[str, Any]) -> str:
    """The whole HTML document for one report."""
    timeline = report.get("timeline", [])
    figures = [
        line_chart(
            "Latency over time (per second)",
            {
                "p50": [(r["t"], r["p50_ms"]) for r in timeline],
                "p99": [(r["t"], r["p99_ms"]) for r in timeline],
            },
            "seconds",
            "ms",
        ),
        bar_chart(
            "Latency histogram",
            [(_fmt(upper), count) for upper, count in report.get("latency_histogram_ms", [])],
            "messages",
        ),
        line_chart(
            "Connected clients",
            {"connected": [(r["t"], r["connected"]) for r in timeline]},
            "seconds",
            "clients",
        ),
        line_chart(
            "Rates",
            {
                "sent/s": [(r["t"], r["sent"]) for r in timeline],
                "received/s": [(r["t"], r["received"]) for r in timeline],
                "errors/s": [(r["t"], r["errors"]) for r in timeline],
            },
            "seconds",
            "per second",
        ),
        line_chart(
            "Tester CPU (all workers)",
            {"tester CPU %": [(r["t"], r.get("tester_cpu_pct")) for r in timeline]},
            "seconds",
            "% of one core",
        ),
    ]
    sale = report.get("sale")
    if sale:
        outcomes = sale.get("outcomes", {})
        figures.append(bar_chart("Flash sale: buy outcomes", sorted(outcomes.items()), "answers"))
        if sale.get("reserved_over_time"):
            figures.append(
                line_chart(
                    "Flash sale: units reserved (cumulative)",
                    {"reserved": [(t, n) for t, n in sale["reserved_over_time"]]},
                    "ms after sale start",
                    "units",
                )
            )
    media = report.get("media")
    if media and media.get("per_viewer"):
        viewers = media["per_viewer"]
        figures.append(
            bar_chart(
                "Media: time to first frame per viewer",
                [(str(i), v.get("ttff_ms") or 0) for i, v in enumerate(viewers)],
                "ms",
            )
        )
        figures.append(
            bar_chart(
                "Media: fps per viewer",
                [(str(i), v.get("fps") or 0) for i, v in enumerate(viewers)],
                "fps",
            )
        )
    lottery = report.get("lottery")
    if lottery:
        figures.append(
            bar_chart(
                "Lottery",
                [("entrants", lottery.get("entrants", 0)), ("winners", lottery.get("winners", 0))],
                "count",
            )
        )

    summary = [
        ("scenario", report["scenario"]),
        ("result", "OK" if report.get("ok") else "FAILED"),
        ("started", report.get("started_at")),
        ("duration (s)", report.get("duration_s")),
        ("clients / peak connected", f"{report.get('clients')} / {report.get('peak_connected')}"),
        ("connect errors / errors", f"{report.get('connect_errors')} / {report.get('errors')}"),
        ("latency ms", report.get("latency_ms")),
        (
            "sent / received / expected / lost / dropped",
            f"{report.get('sent')} / {report.get('received')} / {report.get('expected')} / {report.get('lost')} / {report.get('dropped')}",
        ),
        ("deliveries/s", report.get("deliveries_per_s")),
        ("tester", report.get("tester")),
    ]
    if "server" in report:
        summary.append(("server", report["server"]))
    for key in ("chat", "likes", "sale", "media", "lottery", "machine", "notes", "crashes"):
        value = report.get(key)
        if isinstance(value, dict):
            value = {
                k: v for k, v in value.items() if k not in ("per_viewer", "reserved_over_time")
            }
        if value:
            summary.append((key, value))
    invariants = "".join(
        f'<tr class="{"ok" if v["ok"] else "bad"}"><th>{html.escape(k)}</th><td>{"✔" if v["ok"] else "✘"}</td><td>{html.escape(v["detail"])}</td></tr>'
        for k, v in report.get("invariants", {}).items()
    )
    slos = "".join(
        f'<tr class="{"ok" if s["ok"] else "bad"}"><th>{html.escape(s["slo"])}</th><td>{"✔" if s["ok"] else "✘"}</td><td>{html.escape(str(s["value"]))}</td></tr>'
        for s in report.get("slos", [])
    )
    params = html.escape(json.dumps(report.get("params", {}), indent=1, default=str))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>liveshop load test: {html.escape(report["scenario"])}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#111}}
table{{border-collapse:collapse;margin:1em 0}} th,td{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}}
tr.ok td:nth-child(2){{color:#16a34a}} tr.bad td:nth-child(2){{color:#dc2626;font-weight:bold}}
figure{{display:inline-block;margin:0.5em;border:1px solid #eee;padding:4px}} figcaption{{font-weight:600;font-size:14px}}
.empty{{color:#888;width:{W}px}} pre{{background:#f6f6f6;padding:8px;font-size:12px}}
</style></head><body>
<h1>liveshop load test — {html.escape(report["scenario"])} — {"OK" if report.get("ok") else "FAILED"}</h1>
{_table(summary)}
<h2>Invariants</h2><table>{invariants or "<tr><td>none for this scenario</td></tr>"}</table>
<h2>SLOs</h2><table>{slos or "<tr><td>none given</td></tr>"}</table>
<h2>Plots</h2>
{"".join(figures)}
<h2>Parameters</h2><pre>{params}</pre>
</body></html>
"""


def write_html(report: dict[str, Any], path: str | Path) -> None:
    """Write the self-contained HTML report."""
    Path(path).write_text(render(report))

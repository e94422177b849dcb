"""Command line: ``python -m loadtest SCENARIO [options]``.

Exit status: 0 when every invariant and SLO holds, 1 when one fails, 2 when the run could
not be set up (bad options, server unreachable), 3 when every check held but the tester itself
was saturated (the numbers measure the tester: inconclusive, never "OK").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from .invariants import SaleParams, check_sale, orders_from_json, sale_counts
from .report_html import slo_rows, write_html
from .report_json import write_json
from .runner import install_uvloop, raise_fd_limit, run
from .scenarios import SCENARIOS
from .slo import parse_slos

EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def _common(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--url", help="base URL of a running liveshop server, e.g. http://127.0.0.1:8080"
    )
    target.add_argument(
        "--spawn-server",
        action="store_true",
        help="start a private server (embedded Redis, temp data dir) and report its CPU seconds and peak RSS",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LIVESHOP_API_KEY"),
        help="operator API key (ID:SECRET) to create shows on --url (env LIVESHOP_API_KEY); "
        "--spawn-server makes its own",
    )
    parser.add_argument(
        "--server-arg",
        dest="server_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the spawned server (repeatable), e.g. --server-arg=--batch-ms=50",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="with --spawn-server: the spawned server's HTTP port (default: any free port)",
    )
    parser.add_argument(
        "--udp-ports",
        metavar="MIN-MAX",
        default="",
        help="with --spawn-server: the UDP port range for media, e.g. 40000-40199 (default: any)",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of steady load (default 10)"
    )
    parser.add_argument(
        "--ramp", type=float, default=500.0, help="client joins per second (default 500)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible crowds")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help=f"worker processes (default: cores = {os.cpu_count()})",
    )
    parser.add_argument(
        "--connect-retries",
        type=int,
        default=2,
        help="reconnect attempts of a client whose join failed (default 2)",
    )
    parser.add_argument(
        "--ws-client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="WebSocket client: the tester's lean asyncio protocol (default, ws:// only) or aiohttp's",
    )
    parser.add_argument("--json", metavar="FILE", help="write the JSON report here")
    parser.add_argument("--html", metavar="FILE", help="write the self-contained HTML report here")
    parser.add_argument(
        "--slo", help="objectives, e.g. 'p99<250,errors<0.1%%'; a miss makes the exit status 1"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no live view and no summary on stderr"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="hard limit on the run (default 3×duration+120 s)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser with one subcommand per scenario."""
    parser = argparse.ArgumentParser(
        prog="liveshop-loadtest",
        description="Simulate the crowd of a live-commerce show against a liveshop server and check invariants.",
    )
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for name, cls in SCENARIOS.items():
        p = sub.add_parser(name, help=cls.help, description=cls.help)
        _common(p)
        cls.add_arguments(p)
    audit = sub.add_parser(
        "check-orders",
        help="check flash-sale invariants on saved order records (GET /api/shows/{id}/orders output)",
        description="Run the flash-sale invariant checker on a JSON file of order records; exit 1 on a violation.",
    )
    audit.add_argument("orders", help='JSON file: {"orders": [...]} or a list of order records')
    audit.add_argument("--quantity", type=int, required=True, help="units the sale offered")
    audit.add_argument("--per-user-limit", type=int, required=True, help="units one buyer may hold")
    audit.add_argument(
        "--demand", type=int, required=True, help="eligible demand (sum of min(wanted, limit))"
    )
    audit.add_argument("--sale-id", help="only records of this sale")
    audit.add_argument("--json", metavar="FILE", help="write the verdicts here")
    return parser


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse and validate; exits with status 2 on bad options."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.scenario == "check-orders":
        return vars(ns)
    if not ns.url and not ns.spawn_server:
        parser.error("give --url of a running server or --spawn-server")
    try:
        parse_slos(ns.slo)
    except ValueError as exc:
        parser.error(str(exc))
    if ns.processes < 1:
        parser.error("--processes must be at least 1")
    if (ns.port or ns.udp_ports) and not ns.spawn_server:
        parser.error(
            "--port and --udp-ports set up the spawned server: use them with --spawn-server"
        )
    if not 0 <= ns.port <= 65535:
        parser.error("--port must be 0..65535")
    if ns.port:
        ns.server_args += ["--port", str(ns.port)]
    if ns.udp_ports:
        low, _, high = ns.udp_ports.partition("-")
        if not (low.isdigit() and high.isdigit() and 1024 <= int(low) <= int(high) <= 65535):
            parser.error(f"--udp-ports {ns.udp_ports!r}: expected MIN-MAX within 1024-65535")
        ns.server_args += [f"--udp-port-min={low}", f"--udp-port-max={high}"]
    return vars(ns)


def summary_line(report: dict[str, Any]) -> str:
    """A compact human summary for stderr."""
    lat = report["latency_ms"]
    verdict = report.get("verdict") or ("pass" if report["ok"] else "fail")
    word = {"pass": "OK", "fail": "FAILED", "inconclusive": "INCONCLUSIVE (TESTER SATURATED)"}[
        verdict
    ]
    lines = []
    if report["tester"]["saturated"]:
        lines.append(
            "!!! TESTER SATURATED: the numbers below measure the load tester (or a busy machine), "
            "not the server: add --processes, fewer clients, or a machine of its own !!!"
        )
    lines += [
        f"{report['scenario']}: {word} in {report['duration_s']} s, "
        f"{report['clients']} clients ({report['connect_errors']} connect errors, {report['errors']} errors)",
        f"  latency ms p50={lat['p50']} p90={lat['p90']} p99={lat['p99']} p99.9={lat['p999']} max={lat['max']}",
        f"  sent={report['sent']} received={report['received']} lost={report['lost']} dropped={report['dropped']} "
        f"deliveries/s={report['deliveries_per_s']}",
        f"  tester cpu={report['tester']['cpu_s']} s ({report['tester']['cpu_pct']}% of {report['tester']['processes']} processes)"
        + (
            f"  [TESTER SATURATED: loop lag p99 {report['tester']['loop_lag_ms']['p99']} ms, "
            f"peak {report['tester'].get('peak_cpu_pct')}% CPU: latency may measure the tester, not the server]"
            if report["tester"]["saturated"]
            else ""
        ),
    ]
    machine = report.get("machine")
    if machine:
        lines.append(
            f"  machine busy {machine.get('busy_pct')}% of {machine.get('cores')} cores"
            + (
                f", {machine['other_cpu_s']} cpu-s used by other work"
                if machine.get("other_cpu_s") is not None
                else ""
            )
        )
    if "server" in report:
        lines.append(f"  server {json.dumps(report['server'])}")
    for key in ("sale", "media", "lottery"):
        if key in report:
            lines.append(
                f"  {key} "
                + json.dumps(
                    {k: v for k, v in report[key].items() if not isinstance(v, list | dict)}
                )
            )
    for name, verdict in report["invariants"].items():
        lines.append(f"  [{'ok' if verdict['ok'] else 'FAIL'}] {name}: {verdict['detail']}")
    for row, slo in zip(slo_rows(report), report["slos"], strict=True):
        lines.append(
            f"  [{'ok' if slo['ok'] else 'FAIL'}] SLO {row['metric']}: target {row['target']}, measured {row['measured']}"
        )
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def exit_status(report: dict[str, Any]) -> int:
    """0 when every invariant and SLO held, 1 otherwise; 3 when they held on a saturated tester."""
    ok = all(v["ok"] for v in report.get("invariants", {}).values()) and all(
        s["ok"] for s in report.get("slos", [])
    )
    if not ok:
        return EXIT_FAILED
    return EXIT_INCONCLUSIVE if (report.get("tester") or {}).get("saturated") else EXIT_OK


def check_orders(args: dict[str, Any]) -> int:
    """``check-orders``: the flash-sale invariants over saved records; the exit status follows them."""
    try:
        body = json.loads(Path(args["orders"]).read_text())
    except (OSError, ValueError) as exc:
        print(f"liveshop-loadtest: error: cannot read {args['orders']}: {exc}", file=sys.stderr)
        return EXIT_SETUP
    orders = orders_from_json(body, args.get("sale_id"))
    params = SaleParams(args["quantity"], args["per_user_limit"], args["demand"])
    invariants = check_sale(orders, params)
    report = {"invariants": invariants, "counts": sale_counts(orders, params)}
    if args.get("json"):
        Path(args["json"]).write_text(json.dumps(report, indent=2) + "\n")
    for name, verdict in invariants.items():
        print(f"[{'ok' if verdict['ok'] else 'FAIL'}] {name}: {verdict['detail']}", file=sys.stderr)
    return exit_status(report)


def run_cli(argv: list[str] | None = None) -> int:
    """Run one load test from the command line; returns the exit status."""
    args = parse_args(argv)
    if args["scenario"] == "check-orders":
        return check_orders(args)
    raise_fd_limit()
    install_uvloop()
    try:
        result = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_SETUP
    except (RuntimeError, OSError) as exc:
        print(f"liveshop-loadtest: error: {exc}", file=sys.stderr)
        return EXIT_SETUP
    report = result.report
    if args.get("json"):
        write_json(report, args["json"])
    if args.get("html"):
        write_html(report, args["html"])
    if not args.get("quiet"):
        print(summary_line(report), file=sys.stderr)
    return exit_status(report)

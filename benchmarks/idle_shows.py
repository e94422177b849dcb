"""What commerce costs while nothing happens: server and Redis CPU with N quiet active shows.

    .venv/bin/python benchmarks/idle_shows.py --shows 1,30,100,300 --seconds 10

Each show gets a product and a live sale (so it is an active commerce show that the per-show
timers and the order consumer visit every ~100 ms), then nobody touches it. For each N a fresh
``python -m server`` (embedded Redis) is started, the shows are created, and after a settling
second the server's and Redis's CPU are read from /proc over ``--seconds``. The background cost
must grow slowly with N: a node leads every active show whose lease it holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.spawn import SpawnedServer  # noqa: E402


def call(url: str, body: dict[str, Any], token: str | None = None) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)


def quiet_shows(base: str, count: int, api_key: str) -> None:
    for i in range(count):
        created = call(f"{base}/api/shows", {"title": f"quiet {i}"}, api_key)
        show_id, host = created["show"]["id"], created["host_token"]
        product = call(
            f"{base}/api/shows/{show_id}/products",
            {"title": "Thing", "price": 100, "stock": 10},
            host,
        )["product"]["id"]
        call(
            f"{base}/api/shows/{show_id}/sales",
            {"product_id": product, "quantity": 5, "price": 99},
            host,
        )


def measure(count: int, seconds: float) -> dict[str, float]:
    server = SpawnedServer()
    try:
        base = server.start()
        quiet_shows(base, count, server.api_key)
        time.sleep(1.0)
        before = server.measure()
        started = time.monotonic()
        time.sleep(seconds)
        after = server.measure()
        wall = time.monotonic() - started
    finally:
        server.stop()
    return {
        "shows": count,
        "server_core_pct": round(100 * (after["cpu_s"] - before["cpu_s"]) / wall, 1),
        "redis_core_pct": round(100 * (after["redis_cpu_s"] - before["redis_cpu_s"]) / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shows", default="1,30,100,300", help="comma-separated show counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per count")
    args = parser.parse_args()
    print(f"{'shows':>6} {'server % core':>14} {'redis % core':>13}")
    for count in (int(n) for n in args.shows.split(",")):
        row = measure(count, args.seconds)
        print(
            f"{row['shows']:>6} {row['server_core_pct']:>14} {row['redis_core_pct']:>13}",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Decision paths of auctions, group buys and polls alone, in process: Python → Lua → Redis, no HTTP.

    .venv/bin/python benchmarks/interactive_core.py --votes 100000 --bids 10000 --joins 30000

Starts a private Redis (the embedded one) and, in this process, a bare app with the scripts.
``--votes`` voters vote once each in a poll (a Redis counter per option), ``--bids`` bidders bid
once each in the last seconds of a soft close (proxy bids for a fifth of them), ``--joins``
joiners fill 3-person groups; ``--in-flight`` calls at a time, through the per-show micro-batchers
(``--unbatched``: one Lua call per decision, the baseline). Reports decisions/s, p50/p99
decision latency and Redis CPU per decision (``INFO cpu`` before/after), then checks the
invariants from Redis: tallies = voters, the auction's prices never went down and the leader holds
the top ceiling, every formed group has 3 reservations and the deal's units add up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.auth import Claims  # noqa: E402
from server.redis.embedded import EmbeddedRedis  # noqa: E402


async def redis_cpu(redis: Any) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def timed(calls: list[Any], in_flight: int) -> tuple[list[Any], list[float], float]:
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def one(make: Any) -> Any:
        async with gate:
            started = time.perf_counter()
            result = await make()
            latencies.append((time.perf_counter() - started) * 1000)
            return result

    began = time.perf_counter()
    results = await asyncio.gather(*(one(c) for c in calls))
    return results, latencies, time.perf_counter() - began


def summary(name: str, n: int, latencies: list[float], wall: float, cpu: float) -> dict[str, Any]:
    latencies.sort()
    return {
        "what": name,
        "decisions": n,
        "decisions_per_s": round(n / wall, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "redis_cpu_us_per_decision": round(cpu * 1e6 / n, 1),
    }


async def main(opts: argparse.Namespace) -> list[dict[str, Any]]:
    from server.appkeys import REDIS
    from server.commerce import keys as ck
    from server.commerce.auctions import bid, bid_log, close_auction, create_auction
    from server.commerce.group_buys import create_deal, get_deal, join, list_groups
    from server.commerce.interactive import CLOCK
    from server.commerce.polls import close_poll, create_poll, vote
    from tests.commerce.interactive_app import bare_app, host, product

    tmp = Path(tempfile.mkdtemp(prefix="interactive-core-"))
    embedded = EmbeddedRedis(tmp / "redis")
    url = embedded.start()
    report: list[dict[str, Any]] = []
    try:
        async with bare_app(url) as app:
            redis = app[REDIS]
            show = "core" + str(int(time.time()))
            now = int(time.time() * 1000)
            people = [
                Claims(f"u{i}", f"U{i}", "viewer", show, 2**40)
                for i in range(max(opts.votes, opts.bids, opts.joins))
            ]
            staff = host(show)

            def clock() -> int | None:
                """None: through the micro-batchers; --unbatched: an explicit time, one call each."""
                return int(time.time() * 1000) + 1 if opts.unbatched else None

            poll = await create_poll(
                app,
                staff,
                show,
                {"question": "Q", "options": ["a", "b", "c", "d"], "duration_s": 3600},
                now=now,
            )
            before = await redis_cpu(redis)
            app[CLOCK] = lambda: now + 1  # votes go through the show's micro-batcher, on this clock
            calls = [
                lambda c=c, i=i: vote(app, c, poll["id"], i % 4, now=clock())
                for i, c in enumerate(people[: opts.votes])
            ]
            results, lat, wall = await timed(calls, opts.in_flight)
            report.append(
                summary("poll vote", opts.votes, lat, wall, await redis_cpu(redis) - before)
            )
            _, closed = await close_poll(app, poll["id"], now=now + 2)
            assert sum(closed["tallies"]) == closed["total"] == opts.votes, closed
            assert all(r["outcome"] == "voted" for r in results)
            del app[CLOCK]  # from here on the wall clock: bids and joins use their batchers too

            lot = await product(app, show, 1)
            # The whole auction is its last 10 s: every bid is in the soft close and pushes the end.
            auction = await create_auction(app, staff, show, {"product_id": lot, "start_price": 100, "increment": 10,
                                                              "duration_s": 10, "soft_close_s": 10, "extension_cap_s": 300})  # fmt: skip
            before = await redis_cpu(redis)
            calls = [
                lambda c=c, i=i: bid(
                    app,
                    c,
                    auction["id"],
                    100 + 10 * (i % 500),
                    f"k{i}",
                    100 + 10 * (i % 500) + 10 * (i % 7) if i % 5 == 0 else 0,
                    now=clock(),
                )  # fmt: skip
                for i, c in enumerate(people[: opts.bids])
            ]
            results, lat, wall = await timed(calls, opts.in_flight)
            report.append(
                summary(
                    "auction bid (last 10 s of a soft close)",
                    opts.bids,
                    lat,
                    wall,
                    await redis_cpu(redis) - before,
                )
            )
            ended, state = await close_auction(app, auction["id"], now=auction["extension_cap_at"])
            log = [
                b
                for b in await bid_log(app, show)
                if b["outcome"] in ("leading", "outbid_by_higher")
            ]
            prices = [b["price"] for b in log]
            assert ended and prices == sorted(prices) and state["price"] == prices[-1]
            ceiling = int(await redis.hget(ck.auctions(show), f"{auction['id']}:ceiling"))
            assert (
                ceiling == max(b["ceiling"] for b in log)
                and state["winner_user_id"] == log[-1]["leader"]
            )

            stock = await product(app, show, opts.joins)
            deal = await create_deal(app, staff, show, {"product_id": stock, "group_price": 50, "group_size": 3,
                                                        "quantity": opts.joins, "window_s": 3600})  # fmt: skip
            before = await redis_cpu(redis)
            calls = [
                lambda c=c: join(app, c, deal["id"], now=clock()) for c in people[: opts.joins]
            ]
            results, lat, wall = await timed(calls, opts.in_flight)
            report.append(
                summary(
                    "group join (3-person groups)",
                    opts.joins,
                    lat,
                    wall,
                    await redis_cpu(redis) - before,
                )
            )
            state = await get_deal(app, deal["id"])
            formed = [g for g in await list_groups(app, deal["id"]) if g["status"] == "formed"]
            assert state["left"] + state["held"] + state["reserved"] + state["sold"] == opts.joins
            assert len(formed) == opts.joins // 3 and state["reserved"] == 3 * len(formed)
    finally:
        embedded.stop()
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--bids", type=int, default=10_000)
    parser.add_argument("--joins", type=int, default=30_000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument(
        "--unbatched", action="store_true", help="one Lua call per decision (the baseline)"
    )
    parser.add_argument("--json")
    options = parser.parse_args()
    rows = asyncio.run(main(options))
    for row in rows:
        print(row)
    if options.json:
        Path(options.json).write_text(json.dumps(rows, indent=2))

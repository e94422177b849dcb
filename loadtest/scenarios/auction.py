"""``auction``: N bidders in the last seconds of a soft close (anti-sniping), proxy bids included.

The host starts an auction whose end is ``--window`` seconds after the crowd is ready, with a
soft close of ``--window`` seconds, so every bid lands in the soft-close zone and pushes the
end (up to ``--cap`` seconds more). Each bidder fires once at a random moment of the window
(a share with a proxy maximum) at the price their worker last saw plus 1-100 increments, and up
to twice more after ``too_low``. Afterwards, from the staff bid log and the orders: the price never went
down, no bid was accepted at or after the end in force when it was decided, the end stayed
within the cap, and exactly one reservation went to the leader at the final price.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING, Any

from ..client import call, create_show
from ..invariants import check
from ..metrics import summary_ms
from .base import GO, Scenario, WorkerEnv
from .crowd import decide, decisions_per_s, mint_crowd, outcomes, wait_state

if TYPE_CHECKING:
    from ..runner import Aggregate, Controller

START, INC = 100, 10


class AuctionScenario(Scenario):
    name = "auction"
    help = "live auction: --bidders bid in the last --window s of a soft close; price, end and winner checked"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--bidders", type=int, default=1000, help="people bidding")
        parser.add_argument(
            "--window", type=int, default=10, help="seconds of soft close the bids land in"
        )
        parser.add_argument(
            "--cap", type=int, default=30, help="extension cap (s) past the planned end"
        )
        parser.add_argument(
            "--proxy-fraction", type=float, default=0.2, help="bidders with a proxy maximum"
        )
        parser.add_argument(
            "--connections", type=int, default=128, help="HTTP requests in flight per worker"
        )

    async def prepare(self, ctl: Controller) -> dict[str, Any]:
        show_id, host_token = await create_show(
            ctl.session, ctl.url, f"loadtest auction {self.args['bidders']}", ctl.api_key
        )
        return {"show_id": show_id, "host_token": host_token}

    async def control(self, ctl: Controller, plan: dict[str, Any]) -> None:
        a = self.args
        await ctl.wait_counter(
            "joined", a["bidders"], limit_s=a["bidders"] / max(a["ramp"], 1) + 180
        )
        show_id, host = plan["show_id"], plan["host_token"]
        product = await ctl.request(
            "POST",
            f"/api/shows/{show_id}/products",
            host,
            {"title": "Lot", "price": 100, "stock": 1},
        )
        body = {"product_id": product["product"]["id"], "start_price": START, "increment": INC,
                "duration_s": max(a["window"], 5), "soft_close_s": a["window"], "extension_cap_s": a["cap"]}  # fmt: skip
        received = time.monotonic()
        plan["auction"] = auction = (
            await ctl.request("POST", f"/api/shows/{show_id}/auctions", host, body)
        )["auction"]
        ctl.phase = "bidding"
        ctl.set_flag(
            GO, received + (auction["ends_at"] - auction["created_at"]) / 1000 - a["window"]
        )
        await ctl.wait_counter("done", a["bidders"], limit_s=a["window"] + a["cap"] + 120)

    async def run_worker(self, plan: dict[str, Any], env: WorkerEnv) -> None:
        a = self.args
        crowd = await mint_crowd(env, plan, a["bidders"], "Bidder")
        start = await env.wait_flag(GO)
        if env.stopping:
            return
        auctions = await call(env.session, "GET", f"{env.url}/api/shows/{plan['show_id']}/auctions")
        auction_id = auctions["auctions"][-1]["id"]
        gate = asyncio.Semaphore(a["connections"])
        seen = {"price": START}

        async def bidder(i: int, token: str) -> None:
            rng = env.client_rng(i)
            await env.sleep_until(start + rng.random() * a["window"])
            for attempt in range(3):
                # Jumps of 1-100 increments: simultaneous bidders rarely name the same amount.
                amount = seen["price"] + INC * rng.randint(1, 100)
                proxy = (
                    amount + INC * rng.randint(1, 20) if rng.random() < a["proxy_fraction"] else 0
                )
                answer = await decide(env, gate, f"/api/auctions/{auction_id}/bid", token,
                                      {"amount": amount, "max_amount": proxy, "key": f"b{i}-{attempt}"})  # fmt: skip
                if answer is None:
                    break
                seen["price"] = max(seen["price"], int(answer.get("price") or 0))
                if answer["outcome"] != "too_low":
                    break
            env.stats.add("done")

        await asyncio.gather(*(bidder(i, token) for i, token, _ in crowd))
        env.stats.add("done", len(env.share(a["bidders"])) - len(crowd))

    async def finish(self, ctl: Controller, plan: dict[str, Any], agg: Aggregate) -> dict[str, Any]:
        auction = plan.get("auction")
        if not auction:
            return {
                "invariants": {"auction_created": check(False, "the auction was never created")}
            }
        aid, host = auction["id"], plan["host_token"]
        state = await wait_state(
            ctl, f"/api/auctions/{aid}", "auction", lambda s: s["closed"], self.args["cap"] + 60
        )
        bids = (await ctl.request("GET", f"/api/auctions/{aid}/bids", host))["bids"]
        accepted = [b for b in bids if b["outcome"] in ("leading", "outbid_by_higher")]
        prices = [b["price"] for b in accepted]
        late, end = 0, auction["ends_at"]
        for b in accepted:
            late += b["at"] >= end
            end = b["ends_at"]
        orders = (
            await ctl.request("GET", f"/api/shows/{plan['show_id']}/orders?limit=5000", host)
        )["orders"]
        won = [o for o in orders if o["sale_id"] == aid]
        leader = accepted[-1]["leader"] if accepted else None
        return {
            "auction": {
                "auction_id": aid,
                "bidders": self.args["bidders"],
                "bids_decided": len(bids),
                "bids_accepted": len(accepted),
                "final_price": state["price"],
                "extensions_s": round((state["ends_at"] - auction["ends_at"]) / 1000, 3),
                "outcomes": outcomes(agg.counters),
                "decisions_per_s": decisions_per_s(agg),
                "decision_latency_ms": summary_ms(agg.hist("latency")),
            },
            "invariants": {
                "price_never_down": check(
                    prices == sorted(prices), f"{len(prices)} accepted prices in decision order"
                ),
                "no_bid_after_end": check(
                    late == 0, f"{late} bids accepted at or after the end in force"
                ),
                "end_within_cap": check(
                    state["ends_at"] <= auction["extension_cap_at"],
                    f"end {state['ends_at']}, cap {auction['extension_cap_at']}",
                ),
                "one_winner": check(
                    (
                        len(won) == 1
                        and won[0]["user_id"] == leader
                        and won[0]["price"] == state["price"]
                    )
                    or (not accepted and not won),
                    f"{len(won)} reservations for the lot; leader {leader}",
                ),
            },
        }

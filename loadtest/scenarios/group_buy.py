"""``group-buy``: N joiners fill groups of ``--group-size`` while a flash sale sells the same product.

Every joiner joins the deal once (a share twice: the second answer must be ``already_joined``)
and half also try the flash sale. Afterwards, from the API: the product's units are all
accounted for (stock + deal + sale), the deal's left + held + reserved + sold is its quantity,
nobody is in two groups, every formed group has exactly ``--group-size`` members with one
reservation each at the group price, and the sale did not oversell.
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
from .crowd import decide, decisions_per_s, mint_crowd, outcomes

if TYPE_CHECKING:
    from ..runner import Aggregate, Controller

GROUP_PRICE = 600


class GroupBuyScenario(Scenario):
    name = "group-buy"
    help = "group buy: --joiners fill groups while a flash sale sells the same product; stock and groups checked"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--joiners", type=int, default=1000, help="people joining")
        parser.add_argument("--group-size", type=int, default=3, help="members per group")
        parser.add_argument("--quantity", type=int, default=600, help="units of the deal")
        parser.add_argument(
            "--sale-quantity",
            type=int,
            default=100,
            help="units of the flash sale on the same product",
        )
        parser.add_argument(
            "--rejoin-fraction", type=float, default=0.1, help="joiners who join twice"
        )
        parser.add_argument(
            "--connections", type=int, default=128, help="HTTP requests in flight per worker"
        )

    async def prepare(self, ctl: Controller) -> dict[str, Any]:
        show_id, host_token = await create_show(
            ctl.session, ctl.url, f"loadtest group buy {self.args['joiners']}", ctl.api_key
        )
        return {"show_id": show_id, "host_token": host_token}

    async def control(self, ctl: Controller, plan: dict[str, Any]) -> None:
        a = self.args
        await ctl.wait_counter(
            "joined", a["joiners"], limit_s=a["joiners"] / max(a["ramp"], 1) + 180
        )
        show_id, host = plan["show_id"], plan["host_token"]
        stock = a["quantity"] + a["sale_quantity"]
        product = (
            await ctl.request(
                "POST",
                f"/api/shows/{show_id}/products",
                host,
                {"title": "Tea", "price": 900, "stock": stock},
            )
        )["product"]
        plan["product"] = product
        plan["deal"] = (await ctl.request("POST", f"/api/shows/{show_id}/group-buys", host,
                                          {"product_id": product["id"], "group_price": GROUP_PRICE, "group_size": a["group_size"],
                                           "quantity": a["quantity"], "window_s": 3600}))["deal"]  # fmt: skip
        plan["sale"] = (await ctl.request("POST", f"/api/shows/{show_id}/sales", host,
                                          {"product_id": product["id"], "quantity": a["sale_quantity"], "price": 700}))["sale"]  # fmt: skip
        ctl.phase = "joining"
        ctl.set_flag(GO, time.monotonic())
        await ctl.wait_counter("done", a["joiners"], limit_s=a["joiners"] / 20 + 120)

    async def run_worker(self, plan: dict[str, Any], env: WorkerEnv) -> None:
        a = self.args
        crowd = await mint_crowd(env, plan, a["joiners"], "Joiner")
        await env.wait_flag(GO)
        if env.stopping:
            return
        show = f"{env.url}/api/shows/{plan['show_id']}"
        deal_id = (await call(env.session, "GET", f"{show}/group-buys"))["deals"][-1]["id"]
        sale_id = max(
            (await call(env.session, "GET", f"{show}/sales"))["sales"],
            key=lambda s: s["created_at"],
        )["id"]
        gate = asyncio.Semaphore(a["connections"])
        bad_rejoins = 0

        async def joiner(i: int, token: str) -> None:
            nonlocal bad_rejoins
            rng = env.client_rng(i)
            path = f"/api/group-buys/{deal_id}/join"
            answer = await decide(env, gate, path, token, {})
            if (
                answer
                and answer["outcome"] in ("joined", "formed")
                and rng.random() < a["rejoin_fraction"]
            ):
                again = await decide(env, gate, path, token, {})
                bad_rejoins += bool(again and again["outcome"] != "already_joined")
            if rng.random() < 0.5:
                await decide(env, gate, f"/api/sales/{sale_id}/buy", token, {"key": f"s{i}"})
            env.stats.add("done")

        await asyncio.gather(*(joiner(i, token) for i, token, _ in crowd))
        env.stats.add("done", len(env.share(a["joiners"])) - len(crowd))
        env.stats.extra["bad_rejoins"] = bad_rejoins

    async def finish(self, ctl: Controller, plan: dict[str, Any], agg: Aggregate) -> dict[str, Any]:
        a = self.args
        if not plan.get("deal"):
            return {"invariants": {"deal_created": check(False, "the group buy was never created")}}
        host, show_id = plan["host_token"], plan["show_id"]
        state = await ctl.request("GET", f"/api/group-buys/{plan['deal']['id']}")
        deal, groups = state["deal"], state["groups"]
        sale = (await ctl.request("GET", f"/api/sales/{plan['sale']['id']}"))["sale"]
        stock = (await ctl.request("GET", f"/api/products/{plan['product']['id']}"))["product"][
            "stock"
        ]
        orders: list[dict[str, Any]] = []
        cursor: str | None = ""
        while cursor is not None:
            page = await ctl.request(
                "GET",
                f"/api/shows/{show_id}/orders?limit=5000" + (f"&cursor={cursor}" if cursor else ""),
                host,
            )
            orders += page["orders"]
            cursor = page["next_cursor"]
        deal_orders = [o for o in orders if o["sale_id"] == deal["id"]]
        formed = [g for g in groups if g["status"] == "formed"]
        live = [g for g in groups if g["status"] in ("open", "formed")]
        members = [m[0] for g in live for m in g["members"]]
        units = deal["left"] + deal["held"] + deal["reserved"] + deal["sold"]
        bad = sum(int(x.get("bad_rejoins", 0)) for x in agg.extras)
        return {
            "group_buy": {
                "deal_id": deal["id"],
                "joiners": a["joiners"],
                "groups_formed": len(formed),
                "reservations": len(deal_orders),
                "sale_reserved": sale["reserved"] + sale["sold"],
                "outcomes": outcomes(agg.counters),
                "decisions_per_s": decisions_per_s(agg),
                "decision_latency_ms": summary_ms(agg.hist("latency")),
            },
            "invariants": {
                "stock_accounted": check(
                    stock + deal["quantity"] + sale["quantity"]
                    == a["quantity"] + a["sale_quantity"],
                    f"stock {stock} + deal {deal['quantity']} + sale {sale['quantity']}",
                ),  # fmt: skip
                "deal_units_consistent": check(
                    units == deal["quantity"],
                    f"left+held+reserved+sold = {units} of {deal['quantity']}",
                ),
                "nobody_in_two_groups": check(
                    len(members) == len(set(members)) and bad == 0,
                    f"{len(members)} members, {bad} second joins not refused",
                ),
                "formed_groups_reserved": check(
                    all(len(g["members"]) == a["group_size"] for g in formed)
                    and len(deal_orders) == len(formed) * a["group_size"]
                    and all(o["price"] == GROUP_PRICE for o in deal_orders),
                    f"{len(formed)} formed groups, {len(deal_orders)} reservations",
                ),
                "sale_not_oversold": check(
                    sale["reserved"] + sale["sold"] <= sale["quantity"] and sale["left"] >= 0,
                    f"sale {sale['reserved']}+{sale['sold']} of {sale['quantity']}",
                ),
            },
        }

"""Hypothesis interleavings of joins, leaves, window ends, payments, expiries and flash-sale buys.

Two group deals and a flash sale share one product. Concurrent groups of operations run against
the real scripts (``group.lua``, ``buy.lua``, ``order.lua``); after every group: the product's
units are all accounted for (stock + every deal's and the sale's quantity = the initial stock),
each deal's left + held + reserved + sold = its quantity with nothing below zero, held units are
exactly the members of open groups, nobody is in two live groups of one deal, the deals' live and
paid reservations match their counters, and no reservation was released twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.appkeys import REDIS
from server.commerce import keys as ck
from server.commerce.group_buys import create_deal, get_deal, join, leave, list_groups, settle
from server.commerce.orders import cancel, pay
from server.commerce.products import get_product
from server.commerce.sales import buy, create_sale, get_sale
from server.commerce.scripts import ORDER
from server.errors import ApiError
from server.redis import keys as base

from .interactive_app import bare_app, host, new_show, orders, product, users

USERS, STOCK, WINDOW_S = 6, 12, 10
DEALS = ({"group_size": 2, "quantity": 4}, {"group_size": 3, "quantity": 3})

joins = st.tuples(st.just("join"), st.integers(0, USERS - 1), st.integers(0, 1))
pays = st.tuples(st.just("pay"), st.integers(0, 9))
op = st.one_of(
    joins,
    joins,
    joins,
    pays,
    st.tuples(st.just("leave"), st.integers(0, USERS - 1), st.integers(0, 1)),
    st.tuples(st.just("clock"), st.integers(0, 12_000)),
    st.tuples(st.just("settle"), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("buy"), st.integers(0, USERS - 1), st.integers(0, 2)),
    st.tuples(st.just("pay"), st.integers(0, 9)),
    st.tuples(st.just("cancel"), st.integers(0, 9)),
    st.tuples(st.just("expire"), st.integers(0, 9)),
)
plans = st.lists(st.lists(op, min_size=2, max_size=8), min_size=4, max_size=10)


async def check(app: Any, show_id: str, product_id: str, deal_ids: list[str], sale_id: str) -> None:
    stock = (await get_product(app, product_id))["stock"]
    sale = await get_sale(app, sale_id)
    all_orders = await orders(app, show_id)
    total = stock + sale["quantity"]
    for deal_id in deal_ids:
        deal = await get_deal(app, deal_id)
        total += deal["quantity"]
        units = (deal["left"], deal["held"], deal["reserved"], deal["sold"])
        assert min(units) >= 0 and sum(units) == deal["quantity"], (deal_id, units)
        groups = await list_groups(app, deal_id)
        live = [g for g in groups if g["status"] in ("open", "formed")]
        members = [m[0] for g in live for m in g["members"]]
        assert len(members) == len(set(members))  # nobody in two groups of one deal
        recorded = await app[REDIS].hgetall(ck.group_members(show_id))
        mine = {k.split("|")[1] for k in recorded if k.startswith(deal_id + "|")}
        assert mine == set(members)
        open_groups = [g for g in groups if g["status"] == "open"]
        assert len(open_groups) <= 1
        assert deal["held"] == sum(len(g["members"]) for g in open_groups)
        mine_orders = [o for o in all_orders if o["sale_id"] == deal_id]
        assert deal["reserved"] == sum(o["status"] in ("reserved", "paying") for o in mine_orders)
        assert deal["sold"] == sum(o["status"] == "paid" for o in mine_orders)
        assert all(o["price"] == 700 for o in mine_orders)
    assert total == STOCK
    releases: Counter[str] = Counter()
    for _, data in await app[REDIS].xrange(base.orders_stream(show_id)):
        if data["type"] in ("expired", "cancelled", "failed"):
            releases[json.loads(data["order"])["id"]] += 1
    assert all(n == 1 for n in releases.values())


async def scenario(redis_url: str, plan: list[list[tuple[Any, ...]]]) -> None:
    async with bare_app(redis_url) as app:
        show_id = new_show()
        clock = [int(time.time() * 1000)]  # order.lua judges expiry by Redis TIME
        people = users(show_id, USERS)
        staff = host(show_id)
        product_id = await product(app, show_id, STOCK)
        deal_ids = [
            (
                await create_deal(
                    app,
                    staff,
                    show_id,
                    {
                        "product_id": product_id,
                        "group_price": 700,
                        "window_s": WINDOW_S,
                        "duration_s": 60,
                        **spec,
                    },
                    now=clock[0],
                )  # fmt: skip
            )["id"]
            for spec in DEALS
        ]
        sale_id = (
            await create_sale(app, show_id, {"product_id": product_id, "quantity": 3, "price": 500})
        )["id"]
        rids: list[tuple[str, int]] = []
        index = {c.user_id: i for i, c in enumerate(people)}

        async def run(step: tuple[Any, ...]) -> None:
            kind = step[0]
            if kind == "join":
                reply = await join(app, people[step[1]], deal_ids[step[2]], now=clock[0])
                if reply["outcome"] == "formed":
                    for group in await list_groups(app, deal_ids[step[2]]):
                        for m in group.get("reservations", []):
                            pair = (m["reservation_id"], index[m["user_id"]])
                            if pair not in rids:
                                rids.append(pair)
            elif kind == "leave":
                await leave(app, people[step[1]], deal_ids[step[2]], now=clock[0])
            elif kind == "clock":
                clock[0] += step[1]
            elif kind == "settle":
                await settle(app, deal_ids[step[1]], now=clock[0], force=step[2])
            elif kind == "buy":
                reply = await buy(app, people[step[1]], sale_id, f"k{step[2]}")
                if (
                    reply["outcome"] == "reserved"
                    and (reply["reservation_id"], step[1]) not in rids
                ):
                    rids.append((reply["reservation_id"], step[1]))
            elif rids:
                rid, owner = rids[step[1] % len(rids)]
                try:
                    if kind == "pay":
                        await pay(app, people[owner], rid, "p", "")
                    elif kind == "cancel":
                        await cancel(app, people[owner], rid)
                    else:
                        await app[REDIS].zadd(ck.expiries(show_id), {rid: 0})
                        await ORDER(app, ck.order_script_keys(show_id), ["sweep", 100])
                except ApiError as exc:
                    assert exc.status == 409, exc.to_dict()

        for group in plan:
            await asyncio.gather(*(run(step) for step in group))
            await check(app, show_id, product_id, deal_ids, sale_id)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=plans)
def test_overlapping_group_deals_and_a_flash_sale_keep_invariants(
    redis_url: str, plan: list[list[tuple[Any, ...]]]
) -> None:
    asyncio.run(scenario(redis_url, plan))

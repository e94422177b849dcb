"""Group joins and flash-sale buys on one product through two server processes never oversell."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.commerce.conftest import TwoNodes

pytestmark = pytest.mark.slow


async def test_two_nodes_groups_form_and_stock_holds(two_nodes: TwoNodes) -> None:
    cluster = two_nodes
    a, b = cluster.a, cluster.b
    show_id, host = await cluster.show("Group buy on two nodes")
    product = (
        await cluster.call(
            "POST",
            f"{b}/api/shows/{show_id}/products",
            host,
            {"title": "Tea", "price": 900, "stock": 40},
        )  # fmt: skip
    )["product"]
    deal = (
        await cluster.call(
            "POST",
            f"{a}/api/shows/{show_id}/group-buys",
            host,
            {
                "product_id": product["id"],
                "group_price": 600,
                "group_size": 3,
                "quantity": 30,
                "window_s": 60,
            },
        )  # fmt: skip
    )["deal"]
    sale = (
        await cluster.call(
            "POST",
            f"{b}/api/shows/{show_id}/sales",
            host,
            {"product_id": product["id"], "quantity": 10, "price": 700},
        )  # fmt: skip
    )["sale"]
    tokens = [cluster.viewer(show_id, f"J{i}") for i in range(80)]

    async def joiner(i: int) -> list[dict[str, Any]]:
        out = []
        for j in range(2):  # a second join (other node) must not put anyone in two groups
            url = f"{cluster.url(i + j)}/api/group-buys/{deal['id']}/join"
            out.append(await cluster.call("POST", url, tokens[i]))
        url = f"{cluster.url(i)}/api/sales/{sale['id']}/buy"
        out.append(await cluster.call("POST", url, tokens[i], {"key": "s"}))
        return out

    replies = [r for rs in await asyncio.gather(*(joiner(i) for i in range(80))) for r in rs]
    outcomes = Counter(r["outcome"] for r in replies)
    assert outcomes["formed"] == 10 and outcomes["reserved"] == 10
    state = await cluster.call("GET", f"{b}/api/group-buys/{deal['id']}")
    groups = state["groups"]
    assert [g["status"] for g in groups] == ["formed"] * 10
    members = [m[0] for g in groups for m in g["members"]]
    assert len(members) == 30 == len(set(members))
    d = state["deal"]
    assert (d["left"], d["held"], d["reserved"], d["sold"]) == (0, 0, 30, 0)
    stock = (await cluster.call("GET", f"{a}/api/products/{product['id']}"))["product"]["stock"]
    assert stock == 0
    orders = (await cluster.call("GET", f"{a}/api/shows/{show_id}/orders", host))["orders"]
    mine = [o for o in orders if o["sale_id"] == deal["id"]]
    assert len(mine) == 30 and {o["price"] for o in mine} == {600}
    assert sum(o["sale_id"] == sale["id"] for o in orders) == 10

"""Group joins and flash-sale buys on one product through two server processes never oversell."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import pytest

from loadtest.client import call, create_show
from server import auth
from tests.conftest import API_KEY

pytestmark = pytest.mark.slow


async def test_two_nodes_groups_form_and_stock_holds(redis_url: str, server_proc: Any) -> None:
    nodes = [server_proc("--redis-url", redis_url, "--secret", "test-secret") for _ in range(2)]
    a, b = nodes[0].url, nodes[1].url
    async with aiohttp.ClientSession() as http:
        show_id, host = await create_show(http, a, "Group buy on two nodes", API_KEY)
        product = (
            await call(
                http,
                "POST",
                f"{b}/api/shows/{show_id}/products",
                host,
                {"title": "Tea", "price": 900, "stock": 40},
            )  # fmt: skip
        )["product"]
        deal = (
            await call(
                http,
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
            await call(
                http,
                "POST",
                f"{b}/api/shows/{show_id}/sales",
                host,
                {"product_id": product["id"], "quantity": 10, "price": 700},
            )  # fmt: skip
        )["sale"]
        tokens = [
            auth.issue("test-secret", show_id=show_id, role="viewer", name=f"J{i}")
            for i in range(80)
        ]

        async def joiner(i: int) -> list[dict[str, Any]]:
            out = []
            for j in range(2):  # a second join (other node) must not put anyone in two groups
                url = f"{nodes[(i + j) % 2].url}/api/group-buys/{deal['id']}/join"
                out.append(await call(http, "POST", url, tokens[i]))
            url = f"{nodes[i % 2].url}/api/sales/{sale['id']}/buy"
            out.append(await call(http, "POST", url, tokens[i], {"key": "s"}))
            return out

        replies = [r for rs in await asyncio.gather(*(joiner(i) for i in range(80))) for r in rs]
        outcomes = Counter(r["outcome"] for r in replies)
        assert outcomes["formed"] == 10 and outcomes["reserved"] == 10
        state = await call(http, "GET", f"{b}/api/group-buys/{deal['id']}")
        groups = state["groups"]
        assert [g["status"] for g in groups] == ["formed"] * 10
        members = [m[0] for g in groups for m in g["members"]]
        assert len(members) == 30 == len(set(members))
        d = state["deal"]
        assert (d["left"], d["held"], d["reserved"], d["sold"]) == (0, 0, 30, 0)
        stock = (await call(http, "GET", f"{a}/api/products/{product['id']}"))["product"]["stock"]
        assert stock == 0
        orders = (await call(http, "GET", f"{a}/api/shows/{show_id}/orders", host))["orders"]
        mine = [o for o in orders if o["sale_id"] == deal["id"]]
        assert len(mine) == 30 and {o["price"] for o in mine} == {600}
        assert sum(o["sale_id"] == sale["id"] for o in orders) == 10

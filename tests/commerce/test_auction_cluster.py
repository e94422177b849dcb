"""Auctions, group buys, polls and the sold-out short-circuit on a 3-node Redis Cluster, two app nodes.

Each show's keys share one hash tag, so every script (``auction.lua``, ``group.lua``,
``poll.lua``, ``soldout_record.lua``) runs in one slot; the timers' pipeline spans slots.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loadtest.client import call, create_show
from server.app import create_app
from server.commerce.sales import SOLDOUT
from server.config import Settings
from tests.conftest import API_KEY
from tests.realtime.test_cluster import cluster_url  # noqa: F401 - the 3-node cluster fixture

pytestmark = pytest.mark.slow


async def until(check: Any, timeout_s: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)
    return result


async def test_interactive_commerce_on_a_cluster(aiohttp_client, cluster_url, tmp_path) -> None:  # noqa: F811
    nodes = [
        await aiohttp_client(
            create_app(
                Settings(
                    redis_url=cluster_url, data_dir=tmp_path, secret="cluster", api_key=[API_KEY]
                )
            )
        )
        for _ in range(2)
    ]
    a, b = (str(n.make_url("")).rstrip("/") for n in nodes)
    http = nodes[0].session
    show_id, host = await create_show(http, a, "interactive on a cluster", API_KEY)
    viewers = [
        (await call(http, "POST", f"{b}/api/shows/{show_id}/guest", None, {"name": f"V{i}"}))[
            "token"
        ]
        for i in range(3)
    ]
    product = (await call(http, "POST", f"{a}/api/shows/{show_id}/products", host,
                          {"title": "Lot", "price": 100, "stock": 10}))["product"]  # fmt: skip

    poll = (await call(http, "POST", f"{a}/api/shows/{show_id}/polls", host,
                       {"question": "Q", "options": ["x", "y"]}))["poll"]  # fmt: skip
    for i, token in enumerate(viewers):
        reply = await call(
            http, "POST", f"{(a, b)[i % 2]}/api/polls/{poll['id']}/vote", token, {"option": i % 2}
        )
        assert reply["outcome"] == "voted"
    closed = (await call(http, "POST", f"{b}/api/polls/{poll['id']}/close", host))["poll"]
    assert closed["tallies"] == [2, 1] and closed["final"]

    auction = (await call(http, "POST", f"{a}/api/shows/{show_id}/auctions", host,
                          {"product_id": product["id"], "start_price": 100, "duration_s": 5,
                           "soft_close_s": 1, "extension_cap_s": 0}))["auction"]  # fmt: skip
    first = await call(http, "POST", f"{a}/api/auctions/{auction['id']}/bid", viewers[0],
                       {"amount": 100, "max_amount": 500, "key": "k"})  # fmt: skip
    second = await call(http, "POST", f"{b}/api/auctions/{auction['id']}/bid", viewers[1],
                        {"amount": 200, "key": "k"})  # fmt: skip
    assert (first["outcome"], second["outcome"], second["price"]) == (
        "leading",
        "outbid_by_higher",
        300,
    )

    async def auction_closed() -> dict[str, Any] | None:
        state = (await call(http, "GET", f"{b}/api/auctions/{auction['id']}"))["auction"]
        return state if state["closed"] else None

    won = await until(auction_closed)  # closed by the show's timers on whichever node leads
    assert won["winner_name"] == "V0" and won["reservation_id"]

    deal = (await call(http, "POST", f"{a}/api/shows/{show_id}/group-buys", host,
                       {"product_id": product["id"], "group_price": 50, "group_size": 2, "quantity": 2}))["deal"]  # fmt: skip
    joins = [
        await call(http, "POST", f"{(a, b)[i]}/api/group-buys/{deal['id']}/join", viewers[i])
        for i in range(2)
    ]
    assert [j["outcome"] for j in joins] == ["joined", "formed"]

    sale = (await call(http, "POST", f"{a}/api/shows/{show_id}/sales", host,
                       {"product_id": product["id"], "quantity": 1, "price": 60}))["sale"]  # fmt: skip
    assert (await call(http, "POST", f"{a}/api/sales/{sale['id']}/buy", viewers[0], {"key": "s"}))[
        "outcome"
    ] == "reserved"
    assert (await call(http, "POST", f"{a}/api/sales/{sale['id']}/buy", viewers[1], {"key": "s"}))[
        "outcome"
    ] == "sold_out"

    async def flagged() -> bool:
        return sale["id"] in nodes[0].app[SOLDOUT].flags

    await until(flagged)
    reply = await call(http, "POST", f"{a}/api/sales/{sale['id']}/buy", viewers[2], {"key": "s"})
    assert reply["outcome"] == "sold_out"
    orders = (await call(http, "GET", f"{b}/api/shows/{show_id}/orders", host))["orders"]
    assert sorted(o["sale_id"] for o in orders) == sorted(
        [auction["id"], deal["id"], deal["id"], sale["id"]]
    )

"""A bid stampede through two server processes on one Redis keeps the auction's invariants."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from loadtest.client import ApiError
from tests.commerce.conftest import TwoNodes, wait_for

pytestmark = pytest.mark.slow


async def test_two_nodes_one_winner_price_never_down(two_nodes: TwoNodes) -> None:
    cluster = two_nodes
    a, b = cluster.a, cluster.b
    show_id, host = await cluster.show("Auction on two nodes")
    product = await cluster.call("POST", f"{b}/api/shows/{show_id}/products", host,
                                 {"title": "Lot", "price": 100, "stock": 1})  # fmt: skip
    body = {"product_id": product["product"]["id"], "start_price": 100, "increment": 10,
            "duration_s": 5, "soft_close_s": 2, "extension_cap_s": 3}  # fmt: skip
    auction = (await cluster.call("POST", f"{a}/api/shows/{show_id}/auctions", host, body))[
        "auction"
    ]
    events = await cluster.watch(show_id)
    tokens = [cluster.viewer(show_id, f"B{i}") for i in range(120)]
    rng = random.Random(18)

    async def bidder(i: int) -> list[dict[str, Any]]:
        replies = []
        for j in range(3):
            amount = 100 + rng.randrange(0, 400, 10)
            proxy = amount + rng.randrange(0, 300, 10) if i % 3 == 0 else 0
            url = f"{cluster.url(i + j)}/api/auctions/{auction['id']}/bid"
            bid = {"amount": amount, "max_amount": proxy, "key": f"k{j}"}
            replies.append(await cluster.call("POST", url, tokens[i], bid))
        return replies

    replies = [r for rs in await asyncio.gather(*(bidder(i) for i in range(120))) for r in rs]
    assert {r["outcome"] for r in replies} <= {
        "leading",
        "outbid_by_higher",
        "too_low",
        "ended",
    }

    async def closed() -> dict[str, Any] | None:
        state = (await cluster.call("GET", f"{b}/api/auctions/{auction['id']}"))["auction"]
        return state if state["closed"] else None

    state = await wait_for(closed)
    bids = (await cluster.call("GET", f"{a}/api/auctions/{auction['id']}/bids", host))["bids"]
    accepted = [x for x in bids if x["outcome"] in ("leading", "outbid_by_higher")]
    prices = [x["price"] for x in accepted]
    assert prices == sorted(prices) and prices[-1] == state["price"]
    end = auction["ends_at"]
    for entry in accepted:
        assert entry["at"] < end
        end = entry["ends_at"]
    assert state["ends_at"] <= auction["extension_cap_at"]
    top = max(x["ceiling"] for x in accepted)
    leader = accepted[-1]["leader"]
    assert [x for x in accepted if x["ceiling"] == top][0]["u"] == leader
    orders = (await cluster.call("GET", f"{a}/api/shows/{show_id}/orders", host))["orders"]
    won = [o for o in orders if o["sale_id"] == auction["id"]]
    assert len(won) == 1 and won[0]["user_id"] == leader and won[0]["price"] == state["price"]
    await wait_for(
        lambda: asyncio.sleep(0, [e for e in events if e.get("type") == "auction.ended"])
    )
    ended = [e for e in events if e.get("type") == "auction.ended"]
    assert len(ended) == 1 and ended[0]["reservation_id"] == won[0]["id"]
    with pytest.raises(ApiError) as refused:
        await cluster.call("POST", f"{b}/api/auctions/{auction['id']}/end", tokens[0])
    assert refused.value.status == 403

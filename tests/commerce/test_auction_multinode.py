"""A bid stampede through two server processes on one Redis keeps the auction's invariants."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import pytest

from loadtest.client import ApiError, ShowSocket, call, create_show
from server import auth
from tests.conftest import API_KEY

pytestmark = pytest.mark.slow


async def wait_for(check: Any, timeout_s: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def test_two_nodes_one_winner_price_never_down(redis_url: str, server_proc: Any) -> None:
    nodes = [server_proc("--redis-url", redis_url, "--secret", "test-secret") for _ in range(2)]
    a, b = nodes[0].url, nodes[1].url
    async with aiohttp.ClientSession() as http:
        show_id, host = await create_show(http, a, "Auction on two nodes", API_KEY)
        product = await call(http, "POST", f"{b}/api/shows/{show_id}/products", host,
                             {"title": "Lot", "price": 100, "stock": 1})  # fmt: skip
        body = {"product_id": product["product"]["id"], "start_price": 100, "increment": 10,
                "duration_s": 5, "soft_close_s": 2, "extension_cap_s": 3}  # fmt: skip
        auction = (await call(http, "POST", f"{a}/api/shows/{show_id}/auctions", host, body))[
            "auction"
        ]
        events: list[dict[str, Any]] = []
        viewer = auth.issue("test-secret", show_id=show_id, role="viewer", name="Watcher")
        socket = ShowSocket(http, b, show_id, viewer, on_events=events.extend)
        await socket.connect()
        tokens = [
            auth.issue("test-secret", show_id=show_id, role="viewer", name=f"B{i}")
            for i in range(120)
        ]
        rng = random.Random(18)

        async def bidder(i: int) -> list[dict[str, Any]]:
            replies = []
            for j in range(3):
                amount = 100 + rng.randrange(0, 400, 10)
                proxy = amount + rng.randrange(0, 300, 10) if i % 3 == 0 else 0
                url = f"{nodes[(i + j) % 2].url}/api/auctions/{auction['id']}/bid"
                replies.append(await call(http, "POST", url, tokens[i],
                                          {"amount": amount, "max_amount": proxy, "key": f"k{j}"}))  # fmt: skip
            return replies

        replies = [r for rs in await asyncio.gather(*(bidder(i) for i in range(120))) for r in rs]
        assert {r["outcome"] for r in replies} <= {
            "leading",
            "outbid_by_higher",
            "too_low",
            "ended",
        }

        async def closed() -> dict[str, Any] | None:
            state = (await call(http, "GET", f"{b}/api/auctions/{auction['id']}"))["auction"]
            return state if state["closed"] else None

        state = await wait_for(closed)
        bids = (await call(http, "GET", f"{a}/api/auctions/{auction['id']}/bids", host))["bids"]
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
        orders = (await call(http, "GET", f"{a}/api/shows/{show_id}/orders", host))["orders"]
        won = [o for o in orders if o["sale_id"] == auction["id"]]
        assert len(won) == 1 and won[0]["user_id"] == leader and won[0]["price"] == state["price"]
        await wait_for(
            lambda: asyncio.sleep(0, [e for e in events if e.get("type") == "auction.ended"])
        )
        ended = [e for e in events if e.get("type") == "auction.ended"]
        assert len(ended) == 1 and ended[0]["reservation_id"] == won[0]["id"]
        with pytest.raises(ApiError) as refused:
            await call(http, "POST", f"{b}/api/auctions/{auction['id']}/end", tokens[0])
        assert refused.value.status == 403
        await socket.close()

"""Concurrent stampedes never oversell: many asyncio buyers, in-process and across server processes."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import aiohttp
import pytest

from server import auth
from tests.conftest import OPERATOR


async def test_in_process_stampede(shop: Any) -> None:
    sale = await shop.sale(quantity=60, per_user_limit=2)
    tokens = [await shop.buyer(f"S{i}") for i in range(300)]
    attempts = [(t, f"k{j}") for t in tokens for j in range(3)]
    attempts += random.Random(7).sample(attempts, 200)  # retries with the same key
    random.Random(1).shuffle(attempts)
    replies = await asyncio.gather(*[shop.buy(sale["id"], t, k) for t, k in attempts])
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for (token, key), reply in zip(attempts, replies, strict=True):
        assert first.setdefault((token, key), reply) == reply  # a repeat answers its first outcome
    reserved = [r for r in first.values() if r["outcome"] == "reserved"]
    assert len(reserved) == 60
    assert set(Counter(r["outcome"] for r in first.values())) <= {
        "reserved",
        "sold_out",
        "limit_reached",
    }
    per_user = Counter(token for (token, _), r in first.items() if r["outcome"] == "reserved")
    assert max(per_user.values()) <= 2
    state = await shop.get_sale(sale["id"])
    assert (state["left"], state["reserved"], state["sold"]) == (0, 60, 0)


@pytest.mark.slow
async def test_multi_process_stampede(redis_url: str, server_proc: Any) -> None:
    servers = [server_proc("--redis-url", redis_url, "--secret", "test-secret") for _ in range(2)]
    quantity, buyers = 150, 1200
    async with aiohttp.ClientSession() as http:
        async with http.post(
            servers[0].url + "/api/shows", json={"title": "Stampede"}, headers=OPERATOR
        ) as resp:
            created = await resp.json()
        show_id, host = created["show"]["id"], {"Authorization": f"Bearer {created['host_token']}"}
        async with http.post(
            f"{servers[1].url}/api/shows/{show_id}/products",
            json={"title": "Drop", "price": 100, "stock": 1000},
            headers=host,
        ) as resp:
            product_id = (await resp.json())["product"]["id"]
        body = {"product_id": product_id, "quantity": quantity, "price": 50, "per_user_limit": 1}
        async with http.post(
            f"{servers[0].url}/api/shows/{show_id}/sales", json=body, headers=host
        ) as resp:
            sale_id = (await resp.json())["sale"]["id"]
        tokens = [
            auth.issue("test-secret", show_id=show_id, role="viewer", name=f"B{i}")
            for i in range(buyers)
        ]

        async def attempt(i: int, key: str) -> dict[str, Any]:
            url = f"{servers[i % 2].url}/api/sales/{sale_id}/buy"
            async with http.post(
                url, json={"key": key}, headers={"Authorization": f"Bearer {tokens[i]}"}
            ) as resp:
                assert resp.status == 200
                return dict(await resp.json())

        replies = await asyncio.gather(*[attempt(i, k) for i in range(buyers) for k in ("a", "b")])
        assert sum(r["outcome"] == "reserved" for r in replies) == quantity
        async with http.get(f"{servers[1].url}/api/sales/{sale_id}") as resp:
            sale = (await resp.json())["sale"]
        assert (sale["left"], sale["reserved"], sale["sold"]) == (0, quantity, 0)
        orders: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = f"?limit=100&cursor={cursor}" if cursor else "?limit=100"
            async with http.get(
                f"{servers[0].url}/api/shows/{show_id}/orders{query}", headers=host
            ) as resp:
                page = await resp.json()
            orders += page["orders"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert len(orders) == quantity and len({o["user_id"] for o in orders}) == quantity
    assert {o["status"] for o in orders} == {"reserved"}

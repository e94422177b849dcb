"""``GET /api/shows/{id}/orders?sale_id=`` filters before paging: full pages, cursor and total of that sale."""

from __future__ import annotations

from typing import Any


async def _pages(shop: Any, query: str) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        path = f"/api/shows/{shop.show_id}/orders?{query}" + (f"&cursor={cursor}" if cursor else "")
        status, body = await shop.call("GET", path, shop.host_token)
        assert status == 200, body
        pages.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_sale_filter_pages_only_that_sale(shop: Any) -> None:
    first = await shop.sale(quantity=10, per_user_limit=1)
    second = await shop.sale(quantity=10, per_user_limit=1)
    expected: dict[str, set[str]] = {first["id"]: set(), second["id"]: set()}
    for i in range(12):  # interleaved: A B A B …, B's orders sit between A's in the show index
        sale_id = (first if i % 2 == 0 else second)["id"]
        token = await shop.buyer(f"U{i}")
        expected[sale_id].add((await shop.buy(sale_id, token, f"k{i}"))["reservation_id"])
    pages = await _pages(shop, f"sale_id={first['id']}&limit=4")
    assert [len(p["orders"]) for p in pages] == [4, 2]
    assert all(p["total"] == 6 for p in pages)
    seen = [o for p in pages for o in p["orders"]]
    assert {o["id"] for o in seen} == expected[first["id"]]
    assert all(o["sale_id"] == first["id"] for o in seen)
    assert [o["created_at"] for o in seen] == sorted(o["created_at"] for o in seen)
    unfiltered = await _pages(shop, "limit=5")
    assert [len(p["orders"]) for p in unfiltered] == [5, 5, 2] and unfiltered[0]["total"] == 12
    status, body = await shop.call(
        "GET", f"/api/shows/{shop.show_id}/orders?sale_id=other.s1", shop.host_token
    )
    assert status == 404 and body["error"]["code"] == "sale_not_found"


async def test_orders_folded_before_the_per_sale_index_are_found(shop: Any) -> None:
    from server.appkeys import REDIS
    from server.commerce import keys as ck

    sale = await shop.sale(quantity=5, per_user_limit=1)
    rids = set()
    for i in range(3):
        rids.add((await shop.buy(sale["id"], await shop.buyer(f"O{i}"), f"k{i}"))["reservation_id"])
    await shop.call("GET", f"/api/shows/{shop.show_id}/orders", shop.host_token)  # folded
    redis = shop.client.app[REDIS]
    # What an older version left behind: records and the show index, no per-sale index.
    await redis.delete(ck.sale_order_index(shop.show_id, sale["id"]))
    await redis.delete(ck.sale_order_indexes_built(shop.show_id))
    pages = await _pages(shop, f"sale_id={sale['id']}&limit=2")
    assert {o["id"] for p in pages for o in p["orders"]} == rids and pages[0]["total"] == 3

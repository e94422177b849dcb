"""Products: CRUD, pin limit and broadcasts, roles, bad input."""

from __future__ import annotations

from typing import Any


async def test_create_update_delete(shop: Any) -> None:
    pid = await shop.product(
        title="Cap", price=2500, stock=7, description="Blue", image="/static/cap.svg"
    )
    status, body = await shop.call(
        "PATCH", f"/api/products/{pid}", shop.host_token, price=2200, stock=9
    )
    assert status == 200 and body["product"]["price"] == 2200 and body["product"]["stock"] == 9
    status, body = await shop.call("GET", f"/api/shows/{shop.show_id}/products")
    assert status == 200 and pid in [p["id"] for p in body["products"]]
    status, body = await shop.call("DELETE", f"/api/products/{pid}", shop.host_token)
    assert status == 200 and body["deleted"] == pid
    status, body = await shop.call("GET", f"/api/products/{pid}")
    assert status == 404 and body["error"]["code"] == "product_not_found"


async def test_pin_at_most_three_and_broadcast(shop: Any, events: Any) -> None:
    ids = [shop.product_id] + [await shop.product(title=f"P{i}") for i in range(3)]
    for pid in ids[:3]:
        status, body = await shop.call("POST", f"/api/products/{pid}/pin", shop.host_token)
        assert status == 200 and body["product"]["pinned"] is True
    status, body = await shop.call("POST", f"/api/products/{ids[3]}/pin", shop.host_token)
    assert status == 409 and body["error"]["code"] == "pin_limit"
    pinned = await events.of("product.pinned")
    assert [e["product"]["id"] for e in pinned] == ids[:3]
    assert pinned[0]["product"]["price"] == 2000 and pinned[0]["product"]["stock"] == 100
    status, _ = await shop.call("DELETE", f"/api/products/{ids[0]}/pin", shop.host_token)
    assert status == 200
    assert [e["product_id"] for e in await events.of("product.unpinned")] == [ids[0]]
    lists = await events.of("products")
    assert [p["id"] for p in lists[-1]["pinned"]] == ids[1:3]


async def test_roles_enforced(shop: Any) -> None:
    viewer = await shop.buyer()
    status, body = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/products", viewer, title="X", price=1, stock=1
    )
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await shop.call("POST", f"/api/products/{shop.product_id}/pin", viewer)
    assert status == 403
    status, body = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/products", None, title="X", price=1, stock=1
    )
    assert status == 401


async def test_bad_input_writes_nothing(shop: Any) -> None:
    before = (await shop.call("GET", f"/api/shows/{shop.show_id}/products"))[1]["products"]
    for bad in ({"price": 0}, {"price": -5}, {"stock": -1}, {"title": ""}, {"price": 1.5}, {"currency": "usd"},
                {"image": "javascript:alert(1)"}):  # fmt: skip
        body = {"title": "Bad", "price": 100, "stock": 1, **bad}
        status, reply = await shop.call(
            "POST", f"/api/shows/{shop.show_id}/products", shop.host_token, **body
        )
        assert status == 400 and reply["error"]["code"] == "bad_field", (bad, reply)
    status, reply = await shop.call(
        "PATCH", f"/api/products/{shop.product_id}", shop.host_token, price=0
    )
    assert status == 400
    after = (await shop.call("GET", f"/api/shows/{shop.show_id}/products"))[1]["products"]
    assert after == before


async def test_click_counts_for_stats(shop: Any) -> None:
    viewer = await shop.buyer()
    for _ in range(3):
        status, _body = await shop.call("POST", f"/api/products/{shop.product_id}/click", viewer)
        assert status == 200
    status, body = await shop.call("GET", f"/api/shows/{shop.show_id}/stats", shop.host_token)
    assert status == 200
    assert body["stats"]["product_clicks"] == 3 and body["stats"]["funnel"]["clicked"] == 1
    status, _ = await shop.call("GET", f"/api/shows/{shop.show_id}/stats", viewer)
    assert status == 403


async def test_demo_seeder_adds_products_and_pins_one(shop: Any) -> None:
    from server.commerce.demo import seed_products

    show_id = shop.show_id + "demo"
    from server.shows import create_show

    await create_show(shop.client.app, "Demo", "Host", show_id)
    await seed_products(shop.client.app, show_id)
    status, body = await shop.call("GET", f"/api/shows/{show_id}/products")
    assert status == 200 and len(body["products"]) == 4
    assert [p["title"] for p in body["pinned"]] == ["Aero Runner sneakers"]
    assert all(p["image"].startswith("data:image/svg+xml") for p in body["products"])


async def test_stats_pushed_to_staff(shop: Any, events: Any) -> None:
    from server.redis.broker import decode

    viewer = await shop.buyer()
    await shop.call("POST", f"/api/products/{shop.product_id}/click", viewer)
    raw = None
    for _ in range(40):
        message = await events.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message and decode(message["data"]).event.get("type") == "stats":
            raw = message["data"]
            break
    assert raw is not None, "no stats event within ~8 s"
    event, droppable, staff_only, _ = decode(raw)
    assert staff_only and not droppable
    assert event["product_clicks"] == 1 and set(event["funnel"]) == {
        "viewers",
        "clicked",
        "reserved",
        "paid",
        "bid",
        "group_joined",
        "voted",
    }

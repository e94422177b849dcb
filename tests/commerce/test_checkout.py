"""Checkout: pay idempotency, failures release units, expiry exactly once, cancel, order records."""

from __future__ import annotations

import asyncio
from typing import Any

from server.appkeys import REDIS, SETTINGS
from server.clock import CLOCK
from server.commerce import keys as ck
from server.commerce.payments import PAYMENTS, SIM_ATTEMPTS
from server.commerce.scripts import ORDER
from server.redis import keys as base


async def reserve(shop: Any, sale_id: str, name: str = "Alice") -> tuple[str, str]:
    token = await shop.buyer(name)
    reply = await shop.buy(sale_id, token, "k1")
    assert reply["outcome"] == "reserved"
    return token, reply["reservation_id"]


async def test_pay_is_idempotent_and_charges_once(shop: Any, events: Any) -> None:
    sale = await shop.sale(quantity=2)
    token, rid = await reserve(shop, sale["id"])
    results = await asyncio.gather(
        *[shop.call("POST", f"/api/orders/{rid}/pay", token, key="pay-1") for _ in range(3)]
    )
    assert {status for status, _ in results} == {200}
    assert {body["status"] for _, body in results} == {"paid"}
    status, again = await shop.call("POST", f"/api/orders/{rid}/pay", token, key="pay-2")
    assert status == 200 and again["status"] == "paid"
    provider = shop.client.app[PAYMENTS]
    assert await provider.charges_made(rid) == 1
    assert (
        int(await shop.client.app[REDIS].hget(SIM_ATTEMPTS, rid)) == 1
    )  # the provider was asked once
    state = await shop.get_sale(sale["id"])
    assert (state["sold"], state["reserved"], state["left"]) == (1, 0, 1)
    paid = await events.of("order.paid")
    assert (
        len(paid) == 1
        and paid[0]["buyer"] == "Alice"
        and paid[0]["product"] == "Aero Runner"
        and paid[0]["left"] == 1
    )
    status, body = await shop.call("GET", f"/api/orders/{rid}", token)
    assert status == 200 and body["order"]["status"] == "paid" and body["order"]["paid_at"]
    other = await shop.buyer("Mallory")
    assert (await shop.call("GET", f"/api/orders/{rid}", other))[0] == 403
    assert (await shop.call("POST", f"/api/orders/{rid}/pay", other, key="x"))[0] == 403


async def test_payment_failure_releases_unit(shop: Any) -> None:
    shop.client.app[PAYMENTS].failure_rate = 1.0
    sale = await shop.sale(quantity=1)
    token, rid = await reserve(shop, sale["id"])
    assert (await shop.get_sale(sale["id"]))["left"] == 0
    status, body = await shop.call("POST", f"/api/orders/{rid}/pay", token, key="p")
    assert (
        status == 200 and body["status"] == "failed" and body["order"]["failure"] == "card_declined"
    )
    state = await shop.get_sale(sale["id"])
    assert (state["left"], state["reserved"], state["sold"]) == (1, 0, 0)
    status, again = await shop.call("POST", f"/api/orders/{rid}/pay", token, key="p")
    assert status == 200 and again == body  # same key, first outcome
    status, other = await shop.call("POST", f"/api/orders/{rid}/pay", token, key="p2")
    assert status == 409 and other["error"]["code"] == "order_not_payable"
    # The unit is really back: the same buyer (limit 1) can reserve it again.
    assert (await shop.buy(sale["id"], token, "k2"))["outcome"] == "reserved"
    assert (await shop.get_sale(sale["id"]))["left"] == 0


async def test_expiry_returns_stock_exactly_once(shop: Any) -> None:
    shop.client.app[SETTINGS].reservation_ttl_s = 1
    sale = await shop.sale(quantity=3, per_user_limit=1)
    held = [await reserve(shop, sale["id"], f"B{i}") for i in range(3)]
    assert (await shop.get_sale(sale["id"]))["left"] == 0
    app = shop.client.app
    app[CLOCK].advance(1200)  # past the reservations' expiry: order.lua reads the app clock
    # Several "nodes" sweep at once (and the leader's ticker too): each reservation is expired
    # exactly once, so the order stream holds exactly three "expired" entries.
    keys = ck.order_script_keys(shop.show_id)
    await asyncio.gather(*[ORDER(app, keys, ["sweep", 100]) for _ in range(6)])
    entries = await app[REDIS].xrange(base.orders_stream(shop.show_id))
    assert [f["type"] for _, f in entries].count("expired") == 3
    state = await shop.get_sale(sale["id"])
    assert (state["left"], state["reserved"], state["sold"]) == (3, 0, 0)
    statuses = {o["id"]: o["status"] for o in await shop.reservations()}
    assert set(statuses.values()) == {"expired"}
    for token, rid in held:
        status, body = await shop.call("POST", f"/api/orders/{rid}/pay", token, key="late")
        assert status == 409 and body["error"]["code"] == "order_not_payable"
    await ORDER(app, keys, ["sweep", 100])
    assert (await shop.get_sale(sale["id"]))["left"] == 3


async def test_cancel(shop: Any) -> None:
    sale = await shop.sale(quantity=1)
    token, rid = await reserve(shop, sale["id"])
    other = await shop.buyer("Eve")
    status, body = await shop.call("POST", f"/api/orders/{rid}/cancel", other)
    assert status == 403
    status, body = await shop.call("POST", f"/api/orders/{rid}/cancel", token)
    assert status == 200 and body["status"] == "cancelled"
    status, body = await shop.call("POST", f"/api/orders/{rid}/cancel", token)
    assert status == 409 and body["error"]["code"] == "order_not_cancellable"
    assert (await shop.get_sale(sale["id"]))["left"] == 1


async def test_order_listing_built_by_consumer_group(shop: Any) -> None:
    sale = await shop.sale(quantity=30, per_user_limit=1)
    tokens = [await shop.buyer(f"U{i}") for i in range(30)]
    replies = await asyncio.gather(
        *[shop.buy(sale["id"], t, f"key-{i}") for i, t in enumerate(tokens)]
    )
    rids = {r["reservation_id"] for r in replies}
    await shop.call("POST", f"/api/orders/{replies[0]['reservation_id']}/pay", tokens[0], key="p")
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = f"/api/shows/{shop.show_id}/orders?limit=7" + (f"&cursor={cursor}" if cursor else "")
        status, body = await shop.call("GET", path, shop.host_token)
        assert status == 200
        seen += body["orders"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert {o["id"] for o in seen} == rids and len(seen) == 30
    first = next(o for o in seen if o["id"] == replies[0]["reservation_id"])
    assert (
        first["status"] == "paid"
        and first["idempotency_key"] == "key-0"
        and first["sale_id"] == sale["id"]
    )
    assert all(o["quantity"] == 1 and o["created_at"] and o["user_id"] for o in seen)
    viewer = tokens[1]
    assert (await shop.call("GET", f"/api/shows/{shop.show_id}/orders", viewer))[0] == 403


async def test_abandoned_payment_is_settled_by_the_sweeper(shop: Any) -> None:
    from server.commerce.orders import run_order_op, settle_stale_payment

    sale = await shop.sale(quantity=1)
    token, rid = await reserve(shop, sale["id"])
    user_id = (await shop.reservations())[0]["user_id"]
    code, order = await run_order_op(
        shop.client.app, shop.show_id, "pay_begin", rid, user_id, "p1", ""
    )
    assert code == "charge" and order is not None and order["status"] == "paying"
    # The node that started the payment "died" before charging: once its grace passes, the sweep
    # hands the order back and the provider has no charge for it, so it fails and frees the unit.
    await shop.client.app[REDIS].zadd(ck.expiries(shop.show_id), {rid: 0})
    swept = await ORDER(shop.client.app, ck.order_script_keys(shop.show_id), ["sweep", 100])
    assert rid in swept[2:] or (await shop.reservations())[0]["status"] == "failed"
    await settle_stale_payment(shop.client.app, shop.show_id, rid)
    status, body = await shop.call("GET", f"/api/orders/{rid}", token)
    assert body["order"]["status"] == "failed" and body["order"]["failure"] == "abandoned"
    assert (await shop.get_sale(sale["id"]))["left"] == 1

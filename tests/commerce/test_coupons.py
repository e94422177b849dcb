"""Coupons: limited, first come, one per user, expiry, applied at checkout, returned on failure."""

from __future__ import annotations

import asyncio
from typing import Any

from server.clock import CLOCK
from server.commerce.payments import PAYMENTS


async def test_claims_limited_and_one_per_user(shop: Any, events: Any) -> None:
    status, body = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/coupons", shop.host_token, percent_off=20, count=3
    )
    assert status == 201
    coupon = body["coupon"]
    assert (await events.of("coupon.dropped"))[0]["coupon"]["id"] == coupon["id"]
    tokens = [await shop.buyer(f"C{i}") for i in range(8)]
    replies = await asyncio.gather(
        *[shop.call("POST", f"/api/coupons/{coupon['id']}/claim", t) for t in tokens]
    )
    outcomes = [body["outcome"] for _, body in replies]
    assert outcomes.count("claimed") == 3 and outcomes.count("exhausted") == 5
    winner = tokens[outcomes.index("claimed")]
    assert (await shop.call("POST", f"/api/coupons/{coupon['id']}/claim", winner))[1][
        "outcome"
    ] == "already_claimed"
    assert (await shop.call("GET", f"/api/coupons/{coupon['id']}"))[1]["coupon"]["left"] == 0


async def test_expired_coupon(shop: Any) -> None:
    status, body = await shop.call(
        "POST",
        f"/api/shows/{shop.show_id}/coupons",
        shop.host_token,
        amount_off=100,
        count=5,
        expires_in_s=1,
    )
    shop.client.app[CLOCK].advance(1100)
    token = await shop.buyer()
    assert (await shop.call("POST", f"/api/coupons/{body['coupon']['id']}/claim", token))[1][
        "outcome"
    ] == "expired"


async def test_coupon_applied_at_checkout_and_returned_on_failure(shop: Any) -> None:
    _, body = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/coupons", shop.host_token, percent_off=10, count=5
    )
    coupon_id = body["coupon"]["id"]
    sale = await shop.sale(quantity=3, price=1000, per_user_limit=2)
    token = await shop.buyer("Cora")
    status, body = await shop.call(
        "POST", f"/api/orders/{shop.show_id}.r1/pay", token, key="p", coupon_id=coupon_id
    )
    assert status in (403, 404)
    rid1 = (await shop.buy(sale["id"], token, "a"))["reservation_id"]
    status, body = await shop.call(
        "POST", f"/api/orders/{rid1}/pay", token, key="p", coupon_id=coupon_id
    )
    assert status == 409 and body["error"]["code"] == "coupon_not_claimed"
    assert (await shop.call("POST", f"/api/coupons/{coupon_id}/claim", token))[1][
        "outcome"
    ] == "claimed"
    shop.client.app[PAYMENTS].failure_rate = 1.0
    status, body = await shop.call(
        "POST", f"/api/orders/{rid1}/pay", token, key="p", coupon_id=coupon_id
    )
    assert body["status"] == "failed" and body["order"]["amount"] == 900
    shop.client.app[PAYMENTS].failure_rate = 0.0
    rid2 = (await shop.buy(sale["id"], token, "b"))["reservation_id"]
    status, body = await shop.call(
        "POST", f"/api/orders/{rid2}/pay", token, key="p", coupon_id=coupon_id
    )
    assert (
        status == 200
        and body["status"] == "paid"
        and body["order"]["amount"] == 900
        and body["order"]["discount"] == 100
    )
    rid3 = (await shop.buy(sale["id"], token, "c"))["reservation_id"]
    status, body = await shop.call(
        "POST", f"/api/orders/{rid3}/pay", token, key="p", coupon_id=coupon_id
    )
    assert status == 409 and body["error"]["code"] == "coupon_used"


async def test_bad_coupon_input(shop: Any) -> None:
    path = f"/api/shows/{shop.show_id}/coupons"
    for bad in ({"percent_off": 0}, {"percent_off": 10, "amount_off": 5}, {"percent_off": 101}, {"count": 0},
                {"amount_off": -5}):  # fmt: skip
        status, body = await shop.call("POST", path, shop.host_token, **{"count": 1, **bad})
        assert status == 400 and body["error"]["code"] == "bad_field", bad
    viewer = await shop.buyer()
    assert (await shop.call("POST", path, viewer, percent_off=5, count=1))[0] == 403


async def test_list_coupons_for_late_joiners(shop: Any, make_show: Any) -> None:
    path = f"/api/shows/{shop.show_id}/coupons"
    status, body = await shop.call(
        "POST", path, shop.host_token, title="LATE5", percent_off=5, count=2
    )
    assert status == 201
    coupon_id = body["coupon"]["id"]
    late, other = await shop.buyer("Late"), await shop.buyer("Other")
    status, body = await shop.call("GET", path, late)
    assert status == 200
    [listed] = body["coupons"]
    assert listed["id"] == coupon_id and listed["title"] == "LATE5" and listed["percent_off"] == 5
    assert listed["left"] == 2 and listed["expired"] is False and listed["claimed"] is False
    assert (
        listed["expires_at"]
        == (await shop.call("GET", f"/api/coupons/{coupon_id}"))[1]["coupon"]["expires_at"]
    )
    assert (await shop.call("POST", f"/api/coupons/{coupon_id}/claim", late))[1][
        "outcome"
    ] == "claimed"
    [mine] = (await shop.call("GET", path, late))[1]["coupons"]
    assert mine["left"] == 1 and mine["claimed"] is True and mine["used"] is False
    [theirs] = (await shop.call("GET", path, other))[1]["coupons"]
    assert theirs["left"] == 1 and theirs["claimed"] is False
    # Long-expired coupons are left out; recently expired ones stay, marked expired.
    status, body = await shop.call(
        "POST", path, shop.host_token, amount_off=100, count=1, expires_in_s=1
    )
    shop.client.app[CLOCK].advance(1100)
    coupons = (await shop.call("GET", path, late))[1]["coupons"]
    assert [c["id"] for c in coupons] == [coupon_id, body["coupon"]["id"]]
    assert coupons[1]["expired"] is True

    status, body = await shop.call("GET", path)
    assert status == 401
    other_show, _ = await make_show("Other show")
    status, body = await shop.call("GET", path, await shop.guest(other_show, "Stranger"))
    assert status == 403

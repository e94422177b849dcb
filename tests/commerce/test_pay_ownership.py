"""Paying: a stored payment answer is replayed only to the reservation's own buyer."""

from __future__ import annotations

from typing import Any


async def test_replayed_pay_key_of_another_user_is_403_and_leaks_nothing(shop: Any) -> None:
    sale = await shop.sale(quantity=2)
    v1 = await shop.buyer("Victim")
    rid = (await shop.buy(sale["id"], v1, "buy-1"))["reservation_id"]
    status, paid = await shop.call("POST", f"/api/orders/{rid}/pay", v1, key="pay-v1")
    assert status == 200 and paid["status"] == "paid"
    v2 = await shop.buyer("Mallory")
    status, body = await shop.call("POST", f"/api/orders/{rid}/pay", v2, key="pay-v1")
    assert status == 403 and body["error"]["code"] == "forbidden"
    leaked = repr(body)
    for secret in (paid["order"]["user_id"], "Victim", "buy-1", paid["order"]["charge_id"]):
        assert secret not in leaked
    # The owner still gets the stored answer for the same key.
    status, again = await shop.call("POST", f"/api/orders/{rid}/pay", v1, key="pay-v1")
    assert status == 200 and again == paid


async def test_foreign_pay_key_on_unpaid_reservation_is_403(shop: Any) -> None:
    sale = await shop.sale(quantity=2)
    v1 = await shop.buyer("A")
    rid = (await shop.buy(sale["id"], v1, "b"))["reservation_id"]
    v2 = await shop.buyer("B")
    status, body = await shop.call("POST", f"/api/orders/{rid}/pay", v2, key="guess")
    assert status == 403
    assert (await shop.get_sale(sale["id"]))["reserved"] == 1

"""Flash sales: outcomes, idempotency, bad input, roles, broadcasts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from server.appkeys import COMMANDS
from server.auth import verify


async def test_outcomes_and_idempotent_repeat(shop: Any) -> None:
    sale = await shop.sale(quantity=2, per_user_limit=1)
    alice, bob, carol = [await shop.buyer(n) for n in ("Alice", "Bob", "Carol")]
    first = await shop.buy(sale["id"], alice, "a1")
    assert first["outcome"] == "reserved" and first["reservation_id"].startswith(
        shop.show_id + ".r"
    )
    assert first["expires_at"] > 0
    assert await shop.buy(sale["id"], alice, "a1") == first  # repeated key: first outcome unchanged
    assert (await shop.buy(sale["id"], alice, "a2"))["outcome"] == "limit_reached"
    assert (await shop.buy(sale["id"], bob, "b1"))["outcome"] == "reserved"
    assert (await shop.buy(sale["id"], carol, "c1"))["outcome"] == "sold_out"
    assert (await shop.buy(sale["id"], carol, "c1"))["outcome"] == "sold_out"
    state = await shop.get_sale(sale["id"])
    assert (state["quantity"], state["left"], state["reserved"], state["sold"]) == (2, 0, 2, 0)
    assert state["per_user_limit"] == 1 and state["status"] == "live"


async def test_not_started_and_ended(shop: Any, events: Any) -> None:
    later = await shop.sale(quantity=1, starts_in_s=60)
    viewer = await shop.buyer()
    assert (await shop.buy(later["id"], viewer, "k"))["outcome"] == "not_started"
    assert later["status"] == "scheduled"
    countdown = await events.of("sale.countdown")
    assert (
        countdown and countdown[0]["sale_id"] == later["id"] and countdown[0]["seconds_left"] >= 59
    )
    now = await shop.sale(quantity=1, duration_s=1)
    await asyncio.sleep(1.1)
    assert (await shop.buy(now["id"], viewer, "k2"))["outcome"] == "ended"
    assert (await shop.get_sale(now["id"]))["status"] == "ended"
    assert [e["sale_id"] for e in await events.of("sale.started")] == [now["id"]]
    assert await events.wait_for("sale.ended", sale_id=now["id"])


async def test_host_can_end_early(shop: Any) -> None:
    sale = await shop.sale(quantity=3)
    viewer = await shop.buyer()
    status, body = await shop.call("POST", f"/api/sales/{sale['id']}/end", viewer)
    assert status == 403
    status, body = await shop.call("POST", f"/api/sales/{sale['id']}/end", shop.host_token)
    assert status == 200 and body["sale"]["status"] == "ended"
    assert (await shop.buy(sale["id"], viewer, "k"))["outcome"] == "ended"


async def test_stock_broadcast_throttled(shop: Any, events: Any) -> None:
    sale = await shop.sale(quantity=20, per_user_limit=20)
    viewer = await shop.buyer()
    for i in range(20):
        await shop.buy(sale["id"], viewer, f"k{i}")
    assert await events.wait_for("sale.stock", sale_id=sale["id"], left=0)
    stock = [e for e in await events.of("sale.stock", quiet_s=0.5) if e["sale_id"] == sale["id"]]
    assert stock[-1]["left"] == 0
    assert len(stock) <= 5  # 20 changes folded into at most one event per ~200 ms


async def test_bad_sale_input_writes_nothing(shop: Any) -> None:
    empty = await shop.product(title="Empty", stock=0)
    cases = [
        ({"quantity": 0}, 400, "bad_field"),
        ({"quantity": -3}, 400, "bad_field"),
        ({"price": 0}, 400, "bad_field"),
        ({"price": -1}, 400, "bad_field"),
        ({"per_user_limit": 0}, 400, "bad_field"),
        ({"duration_s": 0}, 400, "bad_field"),
        ({"product_id": f"{shop.show_id}.p999"}, 404, "product_not_found"),
        ({"product_id": "nope"}, 404, "product_not_found"),
        ({"product_id": empty}, 409, "out_of_stock"),
        ({"quantity": 101}, 409, "insufficient_stock"),
    ]
    for fields, status_code, code in cases:
        body = {"product_id": shop.product_id, "quantity": 5, "price": 100, **fields}
        status, reply = await shop.call(
            "POST", f"/api/shows/{shop.show_id}/sales", shop.host_token, **body
        )
        assert (status, reply["error"]["code"]) == (status_code, code), (fields, reply)
    status, body = await shop.call("GET", f"/api/shows/{shop.show_id}/sales")
    assert body["sales"] == []
    status, body = await shop.call("GET", f"/api/products/{shop.product_id}")
    assert body["product"]["stock"] == 100  # failed sales took no stock
    sale = await shop.sale(quantity=40)
    status, body = await shop.call("GET", f"/api/products/{shop.product_id}")
    assert body["product"]["stock"] == 60 and sale["quantity"] == 40


async def test_buy_rejections(shop: Any, make_show: Any, guest_token: Any) -> None:
    sale = await shop.sale()
    viewer = await shop.buyer()
    status, body = await shop.call("POST", f"/api/sales/{sale['id']}/buy", None, key="k")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = await shop.call("POST", f"/api/sales/{sale['id']}/buy", viewer)
    assert status == 400 and body["error"]["code"] == "bad_key"
    status, body = await shop.call("POST", f"/api/sales/{sale['id']}/buy", viewer, key="has space")
    assert status == 400 and body["error"]["code"] == "bad_key"
    status, body = await shop.call("POST", f"/api/sales/{shop.show_id}.s999/buy", viewer, key="k")
    assert status == 404 and body["error"]["code"] == "sale_not_found"
    status, body = await shop.call("GET", "/api/sales/garbage")
    assert status == 404 and body["error"]["code"] == "sale_not_found"
    other_show, _ = await make_show("Other")
    stranger = await guest_token(other_show)
    status, body = await shop.call("POST", f"/api/sales/{sale['id']}/buy", stranger, key="k")
    assert status == 403
    status, body = await shop.call(
        "POST",
        f"/api/shows/{shop.show_id}/sales",
        viewer,
        product_id=shop.product_id,
        quantity=1,
        price=1,
    )
    assert status == 403
    assert (await shop.get_sale(sale["id"]))["left"] == sale["quantity"]


async def test_websocket_handlers(shop: Any) -> None:
    """The commerce commands are in the app's registry: a frame parses to its handler and body."""
    registry = shop.client.app[COMMANDS]
    assert {"buy", "coupon.claim", "lottery.enter", "product.click"} <= set(registry.commands)
    sale = await shop.sale(quantity=1)
    claims = verify("test-secret", await shop.buyer("Dora"), shop.show_id)

    async def run(message: dict[str, Any]) -> Any:
        command, body, _ = registry.parse(json.dumps(message), claims.role)
        return await command.handler(shop.client.app, claims, body)

    reply = await run({"type": "buy", "id": 1, "sale_id": sale["id"], "key": "w1"})
    assert reply is not None and reply["outcome"] == "reserved"
    again = await run({"type": "buy", "id": 2, "sale_id": sale["id"], "key": "w1"})
    assert again == reply
    clicked = await run({"type": "product.click", "product_id": shop.product_id})
    assert clicked == {"product_id": shop.product_id, "clicked": True}


async def test_an_end_no_leader_saw_coming_is_announced_exactly_once(
    shop: Any, events: Any
) -> None:
    """Another node holds the show's timer lease for the sale's whole life, then goes away: the
    next leader, which never saw the sale live, still announces its end, once."""
    from server.appkeys import REDIS
    from server.commerce import keys as ck

    redis = shop.client.app[REDIS]
    await redis.set(ck.leader(shop.show_id), "node-elsewhere", px=60_000)
    short = await shop.sale(quantity=1, duration_s=1)
    await asyncio.sleep(1.2)
    assert (await shop.get_sale(short["id"]))["status"] == "ended"
    assert await events.of("sale.ended") == []  # nobody leads: nothing announced yet
    await redis.delete(ck.leader(shop.show_id))
    assert len(await events.wait_for("sale.ended", sale_id=short["id"])) == 1
    await asyncio.sleep(0.5)  # further ticks must not announce it again
    assert (
        len([e for e in await events.of("sale.ended", quiet_s=0.5) if e["sale_id"] == short["id"]])
        == 1
    )

"""Group buys on the real app and Redis: forming, failing windows, sequential groups, payment, roles."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from server.auth import verify
from server.commerce.group_buys import get_deal, join, list_groups, settle

from .conftest import EventLog, Shop


async def make_deal(shop: Shop, **fields: Any) -> dict[str, Any]:
    body = {
        "product_id": shop.product_id,
        "group_price": 1200,
        "group_size": 3,
        "quantity": 6,
        **fields,
    }
    status, reply = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/group-buys", shop.host_token, **body
    )
    assert status == 201, reply
    return dict(reply["deal"])


async def test_groups_form_one_after_another_and_members_pay(shop: Shop, events: EventLog) -> None:
    deal = await make_deal(shop)
    _, product = await shop.call("GET", f"/api/products/{shop.product_id}")
    assert product["product"]["stock"] == 94  # the deal's 6 units came out of the stock
    tokens = [await shop.buyer(f"J{i}") for i in range(7)]
    path = f"/api/group-buys/{deal['id']}"
    replies = [(await shop.call("POST", path + "/join", t))[1] for t in tokens]
    assert [r["outcome"] for r in replies] == ["joined", "joined", "formed"] * 2 + ["sold_out"]
    assert replies[1]["joined"] == 2 and replies[1]["size"] == 3 and replies[3]["group"] == 2
    _, again = await shop.call("POST", path + "/join", tokens[0])
    assert again["outcome"] == "already_joined"
    formed = await events.wait_for("group.formed", deal_id=deal["id"])
    assert [e["group"] for e in formed] == [1, 2]
    members = formed[0]["members"]
    assert [m["name"] for m in members] == ["J0", "J1", "J2"]
    rid = members[0]["reservation_id"]
    status, paid = await shop.call("POST", f"/api/orders/{rid}/pay", tokens[0], key="p")
    assert status == 200 and paid["status"] == "paid" and paid["order"]["amount"] == 1200
    state = await get_deal(shop.client.app, deal["id"])
    assert (state["left"], state["held"], state["reserved"], state["sold"]) == (0, 0, 5, 1)
    assert state["groups_formed"] == 2
    progress = await events.wait_for("group.progress", deal_id=deal["id"])
    assert progress and all(e["size"] == 3 for e in progress)


async def test_window_short_releases_every_held_unit_once(shop: Shop, events: EventLog) -> None:
    app = shop.client.app
    deal = await make_deal(shop, window_s=30)
    claims = [verify("test-secret", await shop.buyer(f"W{i}"), shop.show_id) for i in range(3)]
    first = await join(app, claims[0], deal["id"])
    await join(app, claims[1], deal["id"])
    state = await get_deal(app, deal["id"])
    assert state["held"] == 2 and state["left"] == 4
    after = first["ends_at"]
    result = await settle(app, deal["id"], now=after)
    assert [e["type"] for e in result["events"]] == ["group.failed"]
    again = await settle(app, deal["id"], now=after + 1)
    assert not again["events"]  # released exactly once
    state = await get_deal(app, deal["id"], now=after)
    assert state["held"] == 0 and state["left"] == 6 and state["groups_failed"] == 1
    failed = await events.wait_for("group.failed", deal_id=deal["id"])
    assert len(failed) == 1 and sorted(failed[0]["members"]) == sorted(
        c.user_id for c in claims[:2]
    )
    # The joiners may join the next group; its window starts with its first join.
    reply = await join(app, claims[0], deal["id"], now=after + 10)
    assert reply["outcome"] == "joined" and reply["group"] == 2
    assert reply["ends_at"] == after + 10 + 30_000
    groups = await list_groups(app, deal["id"])
    assert [g["status"] for g in groups] == ["failed", "open"]


async def test_leave_releases_the_unit_and_end_fails_the_open_group(shop: Shop) -> None:
    deal = await make_deal(shop)
    a, b = await shop.buyer("A"), await shop.buyer("B")
    path = f"/api/group-buys/{deal['id']}"
    await shop.call("POST", path + "/join", a)
    await shop.call("POST", path + "/join", b)
    _, left = await shop.call("POST", path + "/leave", a)
    assert left["outcome"] == "left" and left["joined"] == 1
    _, again = await shop.call("POST", path + "/leave", a)
    assert again["outcome"] == "not_joined"
    status, reply = await shop.call("POST", path + "/end", a)
    assert status == 403
    status, ended = await shop.call("POST", path + "/end", shop.host_token)
    assert status == 200 and ended["deal"]["status"] == "ended"
    assert ended["deal"]["held"] == 0 and ended["deal"]["left"] == 6
    _, late = await shop.call("POST", path + "/join", a)
    assert late["outcome"] == "ended"


async def test_over_websocket_and_bad_input(shop: Shop) -> None:
    viewer = await shop.buyer("Wes")
    base = f"/api/shows/{shop.show_id}/group-buys"
    status, reply = await shop.call(
        "POST", base, viewer, product_id=shop.product_id, group_price=1, group_size=2
    )
    assert status == 403
    for body, field in (
        ({"product_id": shop.product_id, "group_size": 2}, "group_price"),
        ({"product_id": shop.product_id, "group_price": 5, "group_size": 1}, "group_size"),
        (
            {"product_id": shop.product_id, "group_price": 5, "group_size": 3, "quantity": 2},
            "quantity",
        ),
    ):
        status, reply = await shop.call("POST", base, shop.host_token, **body)
        assert status == 400 and reply["error"]["details"]["field"] == field, reply
    status, reply = await shop.call(
        "POST", base, shop.host_token, product_id=shop.product_id, group_price=5, group_size=2,
        quantity=1000,
    )  # fmt: skip
    assert status == 409 and reply["error"]["code"] == "insufficient_stock"
    _, listed = await shop.call("GET", base)
    assert listed["deals"] == []  # nothing half-written
    _, product = await shop.call("GET", f"/api/products/{shop.product_id}")
    assert product["product"]["stock"] == 100
    deal = await make_deal(shop, group_size=2, quantity=2)
    ws = await shop.client.ws_connect(
        f"/ws/{shop.show_id}?token={viewer}", protocols=("liveshop.json",)
    )
    try:
        await ws.send_json({"type": "group.join", "id": 1, "deal_id": deal["id"]})
        await ws.send_json({"type": "group.end", "id": 2, "deal_id": deal["id"]})
        await ws.send_json({"type": "group.join", "id": 3, "deal_id": f"{shop.show_id}.g99"})
        await ws.send_json({"type": "group.leave", "id": 4, "deal_id": deal["id"]})
        got: dict[int, dict[str, Any]] = {}
        async with asyncio.timeout(5):
            while len(got) < 4:
                message = json.loads((await ws.receive()).data)
                if message.get("id") in (1, 2, 3, 4):
                    got[message["id"]] = message
        assert got[1]["outcome"] == "joined"
        assert got[2]["code"] == "forbidden"
        assert got[3]["code"] == "group_buy_not_found"
        assert got[4]["outcome"] == "left"
    finally:
        await ws.close()

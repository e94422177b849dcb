"""Live auctions on the real app and Redis: bids, proxy bids, soft close, the winner's checkout, roles."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from server.commerce.auctions import bid, close_auction, get_auction
from server.commerce.interactive import now_ms

from .conftest import EventLog, Shop


async def make_auction(shop: Shop, **fields: Any) -> dict[str, Any]:
    body = {"product_id": shop.product_id, "start_price": 1000, "increment": 100, **fields}
    status, reply = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/auctions", shop.host_token, **body
    )
    assert status == 201, reply
    return dict(reply["auction"])


async def test_bids_proxy_and_winner_pays_through_checkout(shop: Shop, events: EventLog) -> None:
    auction = await make_auction(shop, duration_s=60)
    assert auction["status"] == "live" and auction["min_bid"] == 1000
    alice, bob = await shop.buyer("Alice"), await shop.buyer("Bob")
    path = f"/api/auctions/{auction['id']}/bid"
    _, low = await shop.call("POST", path, alice, amount=900, key="a0")
    assert low["outcome"] == "too_low"
    _, first = await shop.call("POST", path, alice, amount=1000, max_amount=1500, key="a1")
    assert first["outcome"] == "leading" and first["price"] == 1000
    _, beaten = await shop.call("POST", path, bob, amount=1200, key="b1")
    assert beaten["outcome"] == "outbid_by_higher" and beaten["price"] == 1300
    assert beaten["leader_name"] == "Alice"
    _, replay = await shop.call("POST", path, bob, amount=5000, key="b1")
    assert replay == beaten  # the same key answers its first reply
    _, lead = await shop.call("POST", path, bob, amount=1600, key="b2")
    assert lead["outcome"] == "leading" and lead["price"] == 1600 and lead["leader_name"] == "Bob"
    state = await events.wait_for("auction.bid", auction_id=auction["id"], bids=3)
    assert state and state[-1]["price"] == 1600 and state[-1]["leader_name"] == "Bob"
    status, ended = await shop.call("POST", f"/api/auctions/{auction['id']}/end", shop.host_token)
    assert status == 200 and ended["auction"]["winner_name"] == "Bob"
    rid = ended["auction"]["reservation_id"]
    _, late = await shop.call("POST", path, alice, amount=9000, key="a2")
    assert late["outcome"] == "ended"
    announced = await events.wait_for("auction.ended", auction_id=auction["id"])
    assert len(announced) == 1 and announced[0]["reservation_id"] == rid
    status, paid = await shop.call("POST", f"/api/orders/{rid}/pay", bob, key="pay1")
    assert status == 200 and paid["status"] == "paid" and paid["order"]["amount"] == 1600
    assert paid["order"]["sale_id"] == auction["id"]
    status, _ = await shop.call("POST", f"/api/orders/{rid}/pay", alice, key="pay2")
    assert status == 403


async def test_soft_close_extends_up_to_the_cap(shop: Shop) -> None:
    app = shop.client.app
    auction = await make_auction(shop, duration_s=30, soft_close_s=10, extension_cap_s=15)
    end = auction["ends_at"]
    viewer = (await shop.buyer("Sniper"), await shop.buyer("Other"))
    from server.auth import verify

    claims = [verify("test-secret", t, shop.show_id) for t in viewer]
    late = end - 2000
    reply = await bid(app, claims[0], auction["id"], 1000, "s1", now=late)
    assert reply["outcome"] == "leading" and reply["ends_at"] == late + 10_000
    later = reply["ends_at"] - 1000
    reply = await bid(app, claims[1], auction["id"], 1100, "s2", now=later)
    assert reply["ends_at"] == end + 15_000  # capped, not later + 10 s
    assert (await bid(app, claims[0], auction["id"], 1200, "s3", now=end + 15_000))[
        "outcome"
    ] == "ended"
    closed, state = await close_auction(app, auction["id"], now=end + 15_000, force=False)
    assert closed and state["winner_name"] == "Other" and state["price"] == 1100
    again, _ = await close_auction(app, auction["id"], now=end + 16_000, force=False)
    assert not again  # one close, one winner


async def test_reserve_not_met_means_no_winner(shop: Shop) -> None:
    auction = await make_auction(shop, reserve_price=5000)
    viewer = await shop.buyer()
    _, reply = await shop.call(
        "POST", f"/api/auctions/{auction['id']}/bid", viewer, amount=1000, key="k"
    )
    assert reply["outcome"] == "leading"
    _, ended = await shop.call("POST", f"/api/auctions/{auction['id']}/end", shop.host_token)
    assert ended["auction"]["winner_user_id"] is None and not ended["auction"]["reserve_met"]
    assert not [o for o in await shop.reservations() if o["sale_id"] == auction["id"]]


async def test_not_started_and_over_websocket(shop: Shop) -> None:
    scheduled = await make_auction(shop, starts_in_s=60)
    live = await make_auction(shop)
    token = await shop.buyer("Wes")
    ws = await shop.client.ws_connect(
        f"/ws/{shop.show_id}?token={token}", protocols=("liveshop.json",)
    )
    try:
        base = {"type": "auction.bid", "amount": 1000}
        await ws.send_json({**base, "id": 1, "auction_id": scheduled["id"], "key": "w1"})
        await ws.send_json({**base, "id": 2, "auction_id": live["id"], "key": "w2"})
        await ws.send_json({**base, "id": 3, "auction_id": live["id"], "key": "bad key!"})
        await ws.send_json({"type": "auction.end", "id": 4, "auction_id": live["id"]})
        await ws.send_json({**base, "id": 5, "auction_id": live["id"], "key": "w5", "amount": "x"})
        got: dict[int, dict[str, Any]] = {}
        async with asyncio.timeout(5):
            while len(got) < 5:
                message = json.loads((await ws.receive()).data)
                if message.get("id") in (1, 2, 3, 4, 5):
                    got[message["id"]] = message
        assert got[1]["outcome"] == "not_started"
        assert got[2]["outcome"] == "leading"
        assert got[3]["code"] == "bad_key" and got[3]["field"] == "key"
        assert got[4]["code"] == "forbidden"
        assert got[5]["code"] == "bad_field" and got[5]["field"] == "amount"
    finally:
        await ws.close()
    assert (await get_auction(shop.client.app, live["id"]))["status"] == "live"


async def test_viewer_cannot_create_or_end_and_bad_input_is_refused(shop: Shop) -> None:
    viewer = await shop.buyer()
    base = f"/api/shows/{shop.show_id}/auctions"
    status, reply = await shop.call(
        "POST", base, viewer, product_id=shop.product_id, start_price=100
    )
    assert status == 403 and reply["error"]["code"] == "forbidden"
    for body, code, field in (
        ({"start_price": 100}, "bad_field", "product_id"),
        ({"product_id": shop.product_id}, "bad_field", "start_price"),
        (
            {"product_id": shop.product_id, "start_price": 1, "soft_close_s": 0},
            "bad_field",
            "soft_close_s",
        ),
    ):
        status, reply = await shop.call("POST", base, shop.host_token, **body)
        assert status == 400 and reply["error"]["code"] == code, reply
        assert reply["error"]["details"]["field"] == field
    empty = await shop.product(stock=0)
    status, reply = await shop.call("POST", base, shop.host_token, product_id=empty, start_price=1)
    assert status == 409 and reply["error"]["code"] == "out_of_stock"
    auction = await make_auction(shop)
    status, _ = await shop.call("POST", f"/api/auctions/{auction['id']}/end", viewer)
    assert status == 403
    status, _ = await shop.call("GET", f"/api/auctions/{auction['id']}/bids", viewer)
    assert status == 403  # proxy ceilings are not for viewers to read
    status, bids = await shop.call("GET", f"/api/auctions/{auction['id']}/bids", shop.host_token)
    assert status == 200 and bids["bids"] == []
    status, reply = await shop.call(
        "POST", f"/api/auctions/{auction['id']}/bid", viewer, amount=2000, max_amount=1500, key="k"
    )
    assert status == 400 and reply["error"]["details"]["field"] == "max_amount"
    _, listed = await shop.call("GET", base)
    assert [a["id"] for a in listed["auctions"]] == [auction["id"]]  # nothing half-written
    assert (await get_auction(shop.client.app, auction["id"]))["bids"] == 0
    assert now_ms(shop.client.app) > 0

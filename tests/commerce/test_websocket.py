"""Commerce commands over the real WebSocket gateway (``/ws/{show}``) and their broadcasts."""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def next_of(ws: Any, predicate: Any, timeout_s: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            message = json.loads((await ws.receive()).data)
            if predicate(message):
                return dict(message)


async def test_buy_claim_enter_click_over_websocket(shop: Any) -> None:
    sale = await shop.sale(quantity=1)
    _, coupon = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/coupons", shop.host_token, percent_off=5, count=1
    )
    _, lottery = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/lotteries", shop.host_token, prize="Cap"
    )
    token = await shop.buyer("Wes")
    ws = await shop.client.ws_connect(
        f"/ws/{shop.show_id}?token={token}", protocols=("liveshop.json",)
    )
    try:
        await next_of(ws, lambda m: m.get("type") == "welcome")
        commands = [
            {"type": "buy", "id": 1, "sale_id": sale["id"], "key": "ws-1"},
            {"type": "coupon.claim", "id": 2, "coupon_id": coupon["coupon"]["id"]},
            {"type": "lottery.enter", "id": 3, "lottery_id": lottery["lottery"]["id"]},
            {"type": "product.click", "id": 4, "product_id": shop.product_id},
            {"type": "buy", "id": 5, "sale_id": f"{shop.show_id}.s999", "key": "ws-2"},
        ]
        replies = {}
        for command in commands:
            await ws.send_str(json.dumps(command))
            reply = await next_of(ws, lambda m, i=command["id"]: m.get("id") == i)
            replies[command["id"]] = reply
        assert replies[1]["type"] == "reply" and replies[1]["outcome"] == "reserved"
        assert replies[2]["outcome"] == "claimed"
        assert replies[3]["entered"] is True
        assert replies[4]["clicked"] is True
        assert replies[5]["type"] == "error" and replies[5]["code"] == "sale_not_found"
        rid = replies[1]["reservation_id"]
        status, _ = await shop.call("POST", f"/api/orders/{rid}/pay", token, key="p")
        assert status == 200
        paid = await next_of(
            ws,
            lambda m: (
                m.get("type") == "batch" and any(e.get("type") == "order.paid" for e in m["events"])
            ),
        )
        event = next(e for e in paid["events"] if e["type"] == "order.paid")
        assert event["buyer"] == "Wes" and event["left"] == 0
    finally:
        await ws.close()

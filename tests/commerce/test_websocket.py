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


async def test_commerce_events_match_their_declarations(shop: Any) -> None:
    """Every commerce event a staff connection receives fits its declared Event Struct
    (server/commerce/messages.py): the generated docs describe what is really sent."""
    import msgspec

    from server.appkeys import COMMANDS

    registry = shop.client.app[COMMANDS]
    ws = await shop.client.ws_connect(
        f"/ws/{shop.show_id}?token={shop.host_token}", protocols=("liveshop.json",)
    )
    seen: dict[str, dict[str, Any]] = {}

    async def until_seen(*kinds: str, timeout_s: float = 8.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not set(kinds) <= set(seen):
                message = json.loads((await ws.receive()).data)
                for event in message.get("events", []) if message["type"] == "batch" else []:
                    seen.setdefault(event["type"], event)

    try:
        await next_of(ws, lambda m: m.get("type") == "welcome")
        await shop.call("POST", f"/api/products/{shop.product_id}/pin", shop.host_token)
        await shop.call("DELETE", f"/api/products/{shop.product_id}/pin", shop.host_token)
        sale = await shop.sale(quantity=2)
        token = await shop.buyer("Vic")
        rid = (await shop.buy(sale["id"], token, "k1"))["reservation_id"]
        assert (await shop.call("POST", f"/api/orders/{rid}/pay", token, key="p"))[0] == 200
        await shop.call("POST", f"/api/sales/{sale['id']}/end", shop.host_token)
        await shop.call(
            "POST", f"/api/shows/{shop.show_id}/coupons", shop.host_token, percent_off=5, count=1
        )
        _, lottery = await shop.call(
            "POST", f"/api/shows/{shop.show_id}/lotteries", shop.host_token, prize="Cap"
        )
        await shop.call("POST", f"/api/lotteries/{lottery['lottery']['id']}/draw", shop.host_token)
        kinds = ("product.pinned", "product.unpinned", "products", "sale.started", "order.paid",
                 "sale.ended", "coupon.dropped", "lottery.created", "lottery.drawn", "stats")  # fmt: skip
        await until_seen(*kinds)
    finally:
        await ws.close()
    for kind, event in seen.items():
        schema = registry.events.get(kind)
        if schema is None:  # e.g. presence, alert: declared elsewhere or by others
            continue
        msgspec.convert({k: v for k, v in event.items() if k != "type"}, schema)

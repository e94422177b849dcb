"""Anomaly alerts on a real Redis shared by two app instances: each fires once and clears."""

from __future__ import annotations

from typing import Any

import pytest

from server.app import create_app
from server.commerce.payments import PAYMENTS
from server.insight import alerts
from tests.realtime.conftest import open_ws


@pytest.fixture
async def node_b(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(create_app(settings))


async def test_viewers_drop_fires_once_per_episode_and_clears(
    shop: Any, node_b: Any, events: Any
) -> None:
    show = shop.show_id
    shop.client.app[alerts.SETTINGS].alert_viewer_min = 4
    tokens = [await shop.buyer(f"v{i}") for i in range(4)]
    nodes = (shop.client, node_b, shop.client, node_b)
    sockets = [
        await open_ws(node, f"/ws/{show}?token={t}") for node, t in zip(nodes, tokens, strict=True)
    ]
    await events.wait_for("stats", viewers=4)
    for ws in sockets[:2]:  # half the audience leaves: −50 % within the window
        await ws.close()
    [fired] = await events.wait_for("alert", alert="viewers_drop", state="firing")
    assert (fired["peak"], fired["viewers"]) == (4, 2) and "50%" in fired["reason"]
    back = [await open_ws(node_b, f"/ws/{show}?token={t}") for t in tokens[:2]]
    [cleared] = await events.wait_for("alert", alert="viewers_drop", state="clear")
    assert cleared["viewers"] >= 3  # back under the 30 % drop
    kinds = [(x["alert"], x["state"]) for x in await alerts.history(node_b.app, show)]
    assert kinds == [("viewers_drop", "firing"), ("viewers_drop", "clear")]  # once per episode
    for ws in sockets[2:] + back:
        await ws.close()


async def test_payment_failures_spike_fires_and_clears(shop: Any, events: Any) -> None:
    app, show = shop.client.app, shop.show_id
    app[PAYMENTS].failure_rate = 1.0
    sale = await shop.sale(quantity=5, price=500)
    for i in range(5):  # the default threshold: 5 failures within about a minute
        token = await shop.buyer()
        r = await shop.buy(sale["id"], token, key=f"k{i}")
        status, body = await shop.call(
            "POST", f"/api/orders/{r['reservation_id']}/pay", token, key="p"
        )
        assert status == 200 and body["status"] == "failed"
    [fired] = await events.wait_for("alert", alert="payment_failures", state="firing")
    assert fired["failures"] == 5
    app[alerts.SETTINGS].alert_payment_failures = 6  # one more is allowed now: it clears
    [cleared] = await events.wait_for("alert", alert="payment_failures", state="clear")
    assert cleared["failures"] == 5
    status, body = await shop.call("GET", f"/api/shows/{show}/report", shop.host_token)
    assert [(x["alert"], x["state"]) for x in body["report"]["alerts"]] == [
        ("payment_failures", "firing"),
        ("payment_failures", "clear"),
    ]


async def test_chat_flood_is_pushed_by_the_stats_timer(shop: Any, events: Any) -> None:
    app, show = shop.client.app, shop.show_id
    app[alerts.SETTINGS].alert_chat_per_minute = 3
    ws = await open_ws(shop.client, f"/ws/{show}?token={await shop.buyer()}")
    for i in range(3):
        await ws.request({"type": "chat", "text": f"m{i}"})
    # The show's commerce timer evaluates the alerts with its ~2 s stats push.
    [fired] = await events.wait_for("alert", timeout_s=10, alert="chat_flood")
    assert fired["state"] == "firing" and fired["chat_per_minute"] >= 3
    app[alerts.SETTINGS].alert_chat_per_minute = 600  # the host raises the threshold: it clears
    [cleared] = await events.wait_for("alert", timeout_s=10, alert="chat_flood", state="clear")
    assert cleared["threshold"] == 600
    await ws.close()


async def test_sale_selling_out_fast_fires_and_clears_when_it_ends(
    shop: Any, node_b: Any, events: Any
) -> None:
    sale = await shop.sale(quantity=2, price=100)
    for i in range(2):
        r = await shop.buy(sale["id"], await shop.buyer(), key=f"k{i}")
        assert r["outcome"] == "reserved"
    name = f"sold_out_fast:{sale['id']}"
    [fired] = await events.wait_for("alert", alert=name, state="firing")
    assert (
        fired["sale_id"] == sale["id"] and fired["seconds"] < 30 and "sold out" in fired["reason"]
    )
    resp = await node_b.post(f"/api/sales/{sale['id']}/end", headers=shop.host)
    assert resp.status == 200
    [cleared] = await events.wait_for("alert", alert=name, state="clear")
    assert cleared["sale_id"] == sale["id"]
    assert [e["state"] for e in await events.of("alert") if e["alert"] == name] == [
        "firing",
        "clear",
    ]


async def test_many_buys_from_one_address_fire_and_clear(shop: Any, events: Any) -> None:
    app = shop.client.app
    app[alerts.SETTINGS].alert_buys_per_ip = 3
    sale = await shop.sale(quantity=5, price=100)
    for i in range(3):  # three "different" buyers, all from 127.0.0.1
        assert (await shop.buy(sale["id"], await shop.buyer(), key=f"k{i}"))[
            "outcome"
        ] == "reserved"
    [fired] = await events.wait_for("alert", alert="bot_buying", state="firing")
    assert (fired["ip"], fired["buys"]) == ("127.0.0.1", 3)
    app[alerts.SETTINGS].alert_buys_per_ip = 10
    [cleared] = await events.wait_for("alert", alert="bot_buying", state="clear")
    assert cleared["threshold"] == 10

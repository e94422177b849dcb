"""Anomaly alerts on a real Redis shared by two app instances: each fires once and clears.

Where a rule counts over a window, the test drives the alert loop itself (``alerts.evaluate``
at now, then at a clock past the window) instead of waiting for the show's ~2 s timer.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from server.app import create_app
from server.appkeys import REDIS
from server.commerce import keys as ck
from server.commerce.payments import PAYMENTS
from server.commerce.stats import show_stats
from server.insight import alerts
from tests.realtime.conftest import WsClient, open_ws

OPERATOR_WORD = "scamword"  # an operator's own banned word: counted, never named in an alert


@pytest.fixture
def settings(settings: Any) -> Any:
    settings.banned_words = [OPERATOR_WORD]
    return settings


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


async def _hold_timers(app: Any, show_id: str) -> None:
    """Take the show's timer lease, so no node's timer evaluates its alerts: the test's own
    ticks (at now and past the window) are then the only evaluations, in the test's order."""
    await app[REDIS].set(ck.leader(show_id), "held-by-the-test", px=60_000)


async def _tick(app: Any, show_id: str, ahead_s: float = 0.0) -> list[dict[str, Any]]:
    """One evaluation of the show's alerts, ``ahead_s`` seconds from now on the alert clock."""
    stats = await show_stats(app, show_id)
    return await alerts.evaluate(app, show_id, stats, int((time.time() + ahead_s) * 1000))


async def _episodes(app: Any, show_id: str, kind: str) -> list[str]:
    return [x["state"] for x in await alerts.history(app, show_id) if x["alert"] == kind]


async def test_banned_word_burst_counts_by_category_and_never_names_operator_words(
    shop: Any, events: Any
) -> None:
    app, show = shop.client.app, shop.show_id
    await _hold_timers(app, show)
    app[alerts.SETTINGS].alert_banned_words = 4
    ws = await open_ws(shop.client, f"/ws/{show}?token={await shop.buyer()}")
    for text in ("best deal", "ＢＥＳＴ ever", "the best", f"{OPERATOR_WORD} here"):
        reply = await ws.request({"type": "chat", "text": text})
        assert reply["code"] == "banned_word"
    await _tick(app, show)
    [fired] = await events.wait_for("alert", alert="banned_words", state="firing")
    assert fired["rejected"] == 4 and fired["threshold"] == 4
    assert fired["categories"] == {alerts.ADVERTISING: 3, alerts.OPERATOR: 1}
    assert fired["words"] == {"best": 3}  # built-in advertising terms by name, counts
    assert OPERATOR_WORD not in json.dumps(fired) and "here" not in fired["reason"]
    assert "advertising_claim 3" in fired["reason"]
    [cleared] = [x for x in await _tick(app, show, ahead_s=61) if x["alert"] == "banned_words"]
    assert cleared["state"] == "clear" and cleared["rejected"] == 0
    assert await _episodes(app, show, "banned_words") == ["firing", "clear"]
    await ws.close()


async def test_buys_by_guest_accounts_created_moments_before_fire_and_clear(
    shop: Any, node_b: Any, events: Any
) -> None:
    app, show = shop.client.app, shop.show_id
    await _hold_timers(app, show)
    app[alerts.SETTINGS].alert_new_account_buys = 3
    sale = await shop.sale(quantity=6, price=100)
    status, minted = await shop.call(
        "POST", f"/api/shows/{show}/tokens", shop.host_token, role="viewer", name="Known"
    )
    assert status == 201
    known = await shop.buy(sale["id"], minted["token"], key="k")  # not a guest: never counted
    assert known["outcome"] == "reserved"
    for i in range(2):  # two fresh guests over HTTP on node A …
        assert (await shop.buy(sale["id"], await shop.buyer(), key=f"k{i}"))[
            "outcome"
        ] == "reserved"
    assert not [x for x in await _tick(app, show) if x["alert"] == "new_account_buying"]
    ws = await open_ws(node_b, f"/ws/{show}?token={await shop.buyer()}")  # … one over WS on B
    assert (await ws.request({"type": "buy", "sale_id": sale["id"], "key": "w"}))[
        "outcome"
    ] == "reserved"
    await _tick(node_b.app, show)
    [fired] = await events.wait_for("alert", alert="new_account_buying", state="firing")
    assert (fired["buys"], fired["accounts"], fired["max_age_s"]) == (3, 3, 60.0)
    assert "3 guest accounts" in fired["reason"]
    [cleared] = [
        x for x in await _tick(app, show, ahead_s=61) if x["alert"] == "new_account_buying"
    ]
    assert cleared["state"] == "clear" and cleared["buys"] == 0
    assert await _episodes(app, show, "new_account_buying") == ["firing", "clear"]
    await ws.close()


async def test_websocket_buys_count_by_the_connection_address_behind_a_trusted_proxy(
    shop: Any, events: Any
) -> None:
    app, show = shop.client.app, shop.show_id
    await _hold_timers(app, show)
    settings = app[alerts.SETTINGS]
    settings.alert_buys_per_ip = 3
    settings.trusted_proxies = ["127.0.0.1"]  # the test client is the proxy
    forwarded = {"X-Forwarded-For": "198.51.100.7"}
    sale = await shop.sale(quantity=5, price=100)
    sockets = []
    for i in range(2):
        ws = await shop.client.ws_connect(
            f"/ws/{show}?token={await shop.buyer()}",
            protocols=("liveshop.json",),
            headers=forwarded,
        )
        client = WsClient(ws, "liveshop.json")
        await client.until(lambda c: bool(c.welcome))
        reply = await client.request({"type": "buy", "sale_id": sale["id"], "key": f"w{i}"})
        assert reply["outcome"] == "reserved"
        sockets.append(client)
    resp = await shop.client.post(  # the HTTP buy from the same client counts with them
        f"/api/sales/{sale['id']}/buy",
        json={"key": "h"},
        headers={**shop.bearer(await shop.buyer()), **forwarded},
    )
    assert (await resp.json())["outcome"] == "reserved"
    await _tick(app, show)
    [fired] = await events.wait_for("alert", alert="bot_buying", state="firing")
    assert (fired["ip"], fired["buys"]) == ("198.51.100.7", 3)
    [cleared] = [x for x in await _tick(app, show, ahead_s=121) if x["alert"] == "bot_buying"]
    assert cleared["state"] == "clear"
    assert await _episodes(app, show, "bot_buying") == ["firing", "clear"]
    for client in sockets:
        await client.close()

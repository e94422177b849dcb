"""Host insight on a real Redis shared by two app instances: dwell, interaction rate, funnel, report."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

import pytest

from server import insight
from server.app import create_app
from server.auth import Claims
from tests.realtime.conftest import open_ws


@pytest.fixture
async def node_b(aiohttp_client: Any, settings: Any) -> Any:
    """A second app instance on the same Redis (another node)."""
    return await aiohttp_client(create_app(settings))


def viewer(show_id: str, user_id: str) -> Claims:
    return Claims(user_id, user_id, "viewer", show_id, int(time.time()) + 3600, guest=True)


async def test_dwell_and_interaction_rate_across_two_nodes(shop: Any, node_b: Any) -> None:
    a, b, show = shop.client.app, node_b.app, shop.show_id
    t0 = (int(time.time() * 1000) // 60_000) * 60_000 - 3_600_000  # a minute start, an hour ago
    s = 1000
    alice, bob, carol, dave = (viewer(show, n) for n in ("alice", "bob", "carol", "dave"))
    script = [
        # alice: 0-5 s on A, back on B at 20 s (within the 30 s grace), leaves at 95 s → one 95 s session
        (0, a, "join", alice), (5, a, "leave", alice), (20, b, "join", alice), (95, b, "leave", alice),
        # bob: 0-4 s (bounce), back at 60 s (56 s later: a new session) until 100 s → 4 s and 40 s
        (0, b, "join", bob), (4, b, "leave", bob), (60, b, "join", bob), (100, a, "leave", bob),
        # carol: two tabs on two nodes; the session ends when the last closes → 300 s
        (10, a, "join", carol), (12, b, "join", carol), (30, a, "leave", carol),
        (310, b, "leave", carol),
        # dave: 1-9 s (bounce)
        (1, a, "join", dave), (9, b, "leave", dave),
    ]  # fmt: skip
    for at, app, op, claims in sorted(script, key=lambda row: row[0]):
        if op == "join":
            await insight.joined(app, show, claims, now_ms=t0 + at * s)
        else:
            await insight.left(app, show, claims, now_ms=t0 + at * s)
    await insight.action(a, show, "chatted", "alice", now_ms=t0 + 2 * s)
    await insight.action(b, show, "liked", "alice", now_ms=t0 + 3 * s)
    await insight.action(b, show, "clicked", "bob", shop.product_id, now_ms=t0 + 61 * s)
    await insight.action(a, show, "liked", "dave", now_ms=t0 + 8 * s)
    # Read on either node at 130 s (minute 2): "last minute" is minutes 1 and 2, in which bob
    # joined and carol is still connected; only bob acted in them.
    for app in (a, b):
        got = await insight.insight(app, show, now_ms=t0 + 130 * s, present=["carol"])
        dwell = got["dwell"]
        # Sessions 95, 4, 40, 300, 8 s.
        assert dwell["sessions"] == 5
        assert dwell["mean_s"] == (95 + 4 + 40 + 300 + 8) / 5
        assert dwell["bounce"] == 2 and dwell["bounce_rate"] == 0.4
        assert dwell["buckets"] == {
            "<10s": 2, "10-30s": 0, "30-60s": 1, "60-120s": 1, "120-300s": 0, "300-600s": 1,
            "600-1800s": 0, "1800-3600s": 0, ">=3600s": 0,
        }  # fmt: skip
        # Median of 5: the 2.5th session falls half-way into the 30-60 s bucket.
        assert dwell["median_s"] == 45.0
        assert got["viewers_total"] == 4
        assert got["interaction"]["any"]["show"] == 3  # alice, bob, dave
        assert got["interaction"]["any"]["show_rate"] == 0.75
        assert got["interaction"]["liked"]["show"] == 2
        assert got["viewers_last_minute"] == 2
        assert got["interaction"]["any"]["last_minute"] == 1
        assert got["interaction"]["any"]["last_minute_rate"] == 0.5
        assert got["actions"]["liked"] == 2 and got["actions"]["bid"] == 0
        [row] = got["funnel"]
        assert row["product_id"] == shop.product_id and row["clicks"] == 1


async def test_websocket_hooks_merge_a_reconnect_to_another_node(shop: Any, node_b: Any) -> None:
    token = await shop.buyer("Rea")
    url = f"/ws/{shop.show_id}?token={token}"
    first = await open_ws(shop.client, url)
    await first.request({"type": "chat", "text": "hello"})
    await first.request({"type": "like", "count": 3})
    await first.close()
    second = await open_ws(node_b, url)  # back within the grace, on the other node
    await second.close()

    last: dict[str, Any] = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the leave hooks run after each socket's close
        last = (await insight.insight(node_b.app, shop.show_id, present=[]))["dwell"]
        if last["sessions"] == 1:
            break
        await asyncio.sleep(0.05)
    assert last["sessions"] == 1 and last["bounce"] == 1  # one short session, not two
    got = await insight.insight(shop.client.app, shop.show_id, present=[])
    assert got["interaction"]["chatted"]["show"] == 1 and got["interaction"]["liked"]["show"] == 1
    assert got["viewers_total"] == 1
    # The staff stats carry it too.
    status, body = await shop.call("GET", f"/api/shows/{shop.show_id}/stats", shop.host_token)
    assert status == 200 and body["stats"]["insight"]["dwell"]["sessions"] == 1


async def test_report_after_a_flash_sale_matches_the_orders(shop: Any) -> None:
    status, _ = await shop.call("POST", f"/api/products/{shop.product_id}/pin", shop.host_token)
    assert status == 200
    tokens = [await shop.buyer(f"b{i}") for i in range(3)]
    sockets = [await open_ws(shop.client, f"/ws/{shop.show_id}?token={t}") for t in tokens]
    sale = await shop.sale(quantity=5, price=999)
    for token in tokens[:2]:
        status, _ = await shop.call("POST", f"/api/products/{shop.product_id}/click", token)
        assert status == 200
    reservations = [await shop.buy(sale["id"], t, key=f"k{i}") for i, t in enumerate(tokens)]
    assert all(r["outcome"] == "reserved" for r in reservations)
    for i, (token, r) in enumerate(zip(tokens[:2], reservations, strict=False)):
        status, body = await shop.call(
            "POST", f"/api/orders/{r['reservation_id']}/pay", token, key=f"p{i}"
        )
        assert status == 200 and body["status"] == "paid", body
    for ws in sockets:
        await ws.close()
    status, body = await shop.call("GET", f"/api/shows/{shop.show_id}/report", shop.host_token)
    assert status == 200, body
    report = body["report"]
    _, listed = await shop.call("GET", f"/api/shows/{shop.show_id}/orders", shop.host_token)
    assert sorted(o["id"] for o in report["orders"]) == sorted(o["id"] for o in listed["orders"])
    assert len(report["orders"]) == 3
    assert report["totals"]["paid_orders"] == 2 and report["totals"]["gmv"] == {"USD": 2 * 999}
    [row] = report["insight"]["funnel"]
    assert (row["impressions"], row["clicks"], row["reservations"], row["paid"]) == (3, 2, 3, 2)
    assert row["click_rate"] == round(2 / 3, 4) and row["paid_rate"] == round(2 / 3, 4)
    gmv = report["insight"]["gmv_per_minute"]["USD"]
    assert sum(gmv.values()) == 2 * 999
    assert sum(report["timeline"]["viewers_per_minute"].values()) >= 3
    assert [s["id"] for s in report["sales"]] == [sale["id"]]
    # CSV: the same orders, by Accept header and by ?format=csv.
    for query, headers in (("?format=csv", {}), ("", {"Accept": "text/csv"})):
        resp = await shop.client.get(
            f"/api/shows/{shop.show_id}/report{query}", headers={**shop.host, **headers}
        )
        assert resp.status == 200 and resp.content_type == "text/csv"
        rows = list(csv.reader(io.StringIO(await resp.text())))
        start = rows.index(["section", "orders"])
        ids = [r[0] for r in rows[start + 2 :] if r]
        assert sorted(ids) == sorted(o["id"] for o in report["orders"])
        assert ["paid_orders", "2"] in rows and ["gmv_USD", "1998"] in rows


async def test_report_rejects_bad_format_and_viewers(shop: Any) -> None:
    path = f"/api/shows/{shop.show_id}/report"
    status, body = await shop.call("GET", path + "?format=xml", shop.host_token)
    assert status == 400 and body["error"]["code"] == "bad_field"
    status, body = await shop.call("GET", path, await shop.buyer())
    assert status == 403


async def test_poll_votes_count_as_interactions(shop: Any) -> None:
    from tests.commerce.test_poll import make_poll

    poll = await make_poll(shop)
    for i in range(2):
        status, body = await shop.call(
            "POST", f"/api/polls/{poll['id']}/vote", await shop.buyer(), option=i
        )
        assert status == 200 and body["outcome"] == "voted"
    got = await insight.insight(shop.client.app, shop.show_id, present=[])
    assert got["interaction"]["voted"]["show"] == 2 and got["actions"]["voted"] == 2

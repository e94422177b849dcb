"""The shoppable replay: range requests on recordings, the timeline on the recording's clock,
publishing, and Buy after the show. A real synthetic publisher, real recorder, real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from media.publish import Publisher, PublishOptions
from server.app import create_app
from server.auth import verify_for
from server.config import Settings
from server.media_api import RELAY
from server.realtime import chat
from tests.conftest import OPERATOR
from tests.media.peers import SMALL, wait_until

from .conftest import Shop

TOLERANCE_S = 0.35  # pub/sub hop + the first frame's arrival, on a loaded shared machine


@dataclass
class Recorded:
    replay_id: str
    name: str
    stop_reply: dict[str, Any]
    marks: dict[str, int]  # what the test did → wall ms when it did it
    record_pressed_ms: int


async def record(
    shop: Shop, during: Any, seconds: float = 2.5, end_show: bool = False, codec: str = "vp8"
) -> Recorded:
    """Publish, press Record, run ``during(marks)``, keep recording ``seconds``, Stop (or end)."""
    client = shop.client
    publisher = Publisher(
        str(client.make_url("")).rstrip("/"),
        shop.show_id,
        shop.host_token,
        # encoded once and looped: a loaded machine cannot starve the publisher
        PublishOptions(codec=codec, keyint_s=1.0, **{**SMALL, "fps": 20}, preencode_s=2.0),
    )
    await publisher.start()
    relay = client.app[RELAY]
    marks: dict[str, int] = {}
    try:
        assert await wait_until(
            lambda: (r := relay.routers.get(shop.show_id)) is not None and r.producers, 15
        )
        pressed = int(time.time() * 1000)
        status, body = await shop.call(
            "POST", f"/api/shows/{shop.show_id}/recordings", shop.host_token
        )
        assert status == 201, body
        name = body["recording"]["name"]
        recorder = relay.routers[shop.show_id].recorder
        assert await wait_until(lambda: recorder.started_at_ms is not None, 20)
        await during(marks)
        await asyncio.sleep(seconds)  # the recording's length, not a wait for a condition
        if end_show:
            await publisher.stop()
            reply: dict[str, Any] = {}
        else:
            status, reply = await shop.call(
                "POST", f"/api/shows/{shop.show_id}/recordings/stop", shop.host_token
            )
            assert status == 200, reply
    finally:
        await publisher.stop()
    return Recorded(name.rsplit(".", 1)[0], name, reply.get("recording", {}), marks, pressed)


async def test_range_requests_serve_exact_bytes_and_416(
    shop: Shop, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    async def nothing(marks: dict[str, int]) -> None:
        return None

    rec = await record(shop, nothing, seconds=2.0)
    assert rec.stop_reply["replay_id"] == rec.replay_id and rec.stop_reply["published"] is True
    path = shop.client.app[RELAY].recording_path(shop.show_id, rec.name)
    data = path.read_bytes()
    size = len(data)
    assert size > 10_000
    media = f"/api/replays/{rec.replay_id}/media"
    host_file = f"/api/shows/{shop.show_id}/recordings/{rec.name}"

    resp = await shop.client.get(media)
    assert resp.status == 200 and resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Type"] == "video/webm" and await resp.read() == data

    for url, headers in ((media, {}), (host_file, shop.host)):
        for rng, start, end in (
            ("bytes=0-99", 0, 99),
            (f"bytes=1000-{size + 5000}", 1000, size - 1),  # past the end: up to the end
            ("bytes=-500", size - 500, size - 1),
            (f"bytes={size // 2}-", size // 2, size - 1),
        ):
            resp = await shop.client.get(url, headers={**headers, "Range": rng})
            assert resp.status == 206, (rng, resp.status)
            assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{size}", rng
            assert resp.headers["Accept-Ranges"] == "bytes"
            assert await resp.read() == data[start : end + 1], rng

        for rng in (
            f"bytes={size}-",
            f"bytes={size + 10}-{size + 20}",
            "bytes=abc",
            "bytes=0-1,5-9",
        ):
            resp = await shop.client.get(url, headers={**headers, "Range": rng})
            assert resp.status == 416, (rng, resp.status)
            assert resp.headers["Content-Range"] == f"bytes */{size}"
            assert (await resp.json())["error"]["code"] == "range_not_satisfiable"

    # another node on the same Redis has the timeline, and sends the file request to the recorder's
    other = dataclasses.replace(
        settings, data_dir=tmp_path / "node-b", public_url="http://node-b.example"
    )
    other.data_dir.mkdir(parents=True)
    node_b = await aiohttp_client(create_app(other))
    resp = await node_b.get(f"/api/replays/{rec.replay_id}/timeline")
    assert resp.status == 200
    resp = await node_b.get(media + "?x=1", allow_redirects=False, headers={"Range": "bytes=0-9"})
    assert resp.status == 307
    assert resp.headers["Location"] == f"{settings.base_url}{media}?x=1"

    # unpublished: the public file, timeline and page data are gone; the host still has them
    status, _ = await shop.call("POST", f"/api/replays/{rec.replay_id}/unpublish", shop.host_token)
    assert status == 200
    resp = await shop.client.get(media, headers={"Range": "bytes=0-9"})
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "replay_not_found"
    resp = await shop.client.get(media, headers={**shop.host, "Range": "bytes=0-9"})
    assert resp.status == 206 and await resp.read() == data[:10]
    status, show = await shop.call("GET", f"/api/shows/{shop.show_id}")
    assert show["show"]["replay_url"] is None


async def test_timeline_puts_events_at_their_moment_of_the_recording(shop: Shop) -> None:
    app = shop.client.app
    guest = await shop.buyer("Mia")
    claims = verify_for(app, guest, shop.show_id)
    other = await shop.product(title="Silk Scarf", price=3900)

    async def during(marks: dict[str, int]) -> None:
        await asyncio.sleep(0.6)
        marks["pin"] = int(time.time() * 1000)
        status, body = await shop.call(
            "POST", f"/api/products/{shop.product_id}/pin", shop.host_token
        )
        assert status == 200, body
        await asyncio.sleep(0.5)
        marks["chat"] = int(time.time() * 1000)
        await chat.send(app, claims, "love the runner")
        await asyncio.sleep(0.5)
        marks["sale"] = int(time.time() * 1000)
        await shop.sale(duration_s=60)
        marks["gone"] = int(time.time() * 1000)
        deleted = await chat.send(app, claims, "this one gets deleted")
        status, body = await shop.call("POST", f"/api/products/{other}/pin", shop.host_token)
        assert status == 200, body
        from server.realtime import moderation

        host = verify_for(app, shop.host_token, shop.show_id)
        await moderation.delete(app, host, moderation.ModDelete(message_id=deleted["msg_id"]))

    rec = await record(shop, during, seconds=1.5, end_show=True)
    # the show ended with the recording on: the end made it the replay, and says so
    status, body = await shop.call("GET", f"/api/shows/{shop.show_id}")
    assert body["show"]["status"] == "ended"
    assert body["show"]["replay_url"] == f"/replay/{rec.replay_id}"

    status, body = await shop.call("GET", f"/api/replays/{rec.replay_id}/timeline")
    assert status == 200, body
    meta, events = body["replay"], body["events"]
    started = meta["started_at_ms"]
    assert 0 <= started - rec.record_pressed_ms < 5000  # the first keyframe after Record
    assert 3.0 < meta["duration_s"] < 10

    def moment(kind: str, **match: Any) -> float:
        found = [
            e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())
        ]
        assert found, (kind, match, events)
        return float(found[0]["t"])

    def expected(mark: str) -> float:
        return (rec.marks[mark] - started) / 1000

    assert events[0] == {"t": 0.0, "type": "products", "pinned": []}  # the snapshot at Record
    pinned_at = [e for e in events if e["type"] == "products" and e["pinned"]][0]
    assert abs(pinned_at["t"] - expected("pin")) < TOLERANCE_S
    assert [p["id"] for p in pinned_at["pinned"]] == [shop.product_id]
    assert abs(moment("chat", text="love the runner") - expected("chat")) < TOLERANCE_S
    assert abs(moment("sale.started") - expected("sale")) < TOLERANCE_S
    chat_event = [e for e in events if e["type"] == "chat"][0]
    assert chat_event["name"] == "Mia" and "uid" not in chat_event  # no user ids in public
    assert not [e for e in events if e.get("text") == "this one gets deleted"]
    assert all(events[i]["t"] <= events[i + 1]["t"] for i in range(len(events) - 1))
    assert all(e["t"] <= meta["duration_s"] + 1 for e in events)
    assert sorted(body["products"]) == sorted([shop.product_id, other])
    assert body["products"][shop.product_id]["price"] == 2000  # the list price, not the sale's


async def test_replay_buy_is_a_normal_order_once_per_click(shop: Shop) -> None:
    unshown = await shop.product(title="Never pinned", price=100, stock=5)
    last = await shop.product(title="Last one", price=500, stock=1)

    async def during(marks: dict[str, int]) -> None:
        for product_id in (shop.product_id, last):
            status, _ = await shop.call("POST", f"/api/products/{product_id}/pin", shop.host_token)
            assert status == 200
        sale = await shop.sale(duration_s=1, quantity=3)
        shop.tokens["sale"] = sale["id"]

    rec = await record(shop, during, seconds=1.5, end_show=True)
    sale_id = shop.tokens["sale"]
    buyer = await shop.buyer("Ana")
    url = f"/api/replays/{rec.replay_id}/buy"
    stock_path = f"/api/products/{shop.product_id}"
    stock_before = (await shop.call("GET", stock_path))[1]["product"]["stock"]

    status, first = await shop.call("POST", url, buyer, product_id=shop.product_id, key="click-1")
    assert status == 200, first
    assert first["outcome"] == "reserved" and first["price"] == 2000
    status, again = await shop.call("POST", url, buyer, product_id=shop.product_id, key="click-1")
    assert status == 200 and again == first  # a retried click: the same order, not a second
    assert (await shop.call("GET", stock_path))[1]["product"]["stock"] == stock_before - 1

    # the ended sale stays ended: nothing of it was sold or re-opened
    sale = await shop.get_sale(sale_id)
    assert sale["status"] == "ended" and sale["reserved"] == 0 and sale["sold"] == 0

    # the normal checkout: only the buyer sees and pays it, once, at the list price
    order_id = first["reservation_id"]
    intruder = await shop.buyer("Eve")
    status, body = await shop.call("POST", f"/api/orders/{order_id}/pay", intruder, key="p1")
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await shop.call("GET", f"/api/orders/{order_id}", intruder)
    assert status == 403
    status, paid = await shop.call("POST", f"/api/orders/{order_id}/pay", buyer, key="p1")
    assert status == 200 and paid["status"] == "paid", paid
    assert paid["order"]["amount"] == 2000 and paid["order"]["product_id"] == shop.product_id
    status, listing = await shop.call("GET", f"/api/shows/{shop.show_id}/orders", shop.host_token)
    assert [o["id"] for o in listing["orders"] if o["product_id"] == shop.product_id] == [order_id]

    # the last unit: one buyer holds it, the next is told it is gone; a cancel brings it back
    status, held = await shop.call("POST", url, buyer, product_id=last, key="last-1")
    assert status == 200 and held["outcome"] == "reserved"
    status, reply = await shop.call("POST", url, intruder, product_id=last, key="last-2")
    assert status == 409 and reply["error"]["code"] == "out_of_stock"
    status, _ = await shop.call("POST", f"/api/orders/{held['reservation_id']}/cancel", buyer)
    assert status == 200
    status, reply = await shop.call("POST", url, intruder, product_id=last, key="last-3")
    assert status == 200 and reply["outcome"] == "reserved", reply

    # bad input, each with its code, and nothing written
    resp = await shop.client.post("/api/shows", json={"title": "Other"}, headers=OPERATOR)
    foreign = await shop.guest((await resp.json())["show"]["id"])
    cases = [
        (url, None, {"product_id": shop.product_id, "key": "k2"}, 401, "unauthorized"),
        (url, foreign, {"product_id": shop.product_id, "key": "k2"}, 403, "forbidden"),
        (url, buyer, {"product_id": shop.product_id}, 400, "bad_key"),
        (url, buyer, {"key": "k3"}, 400, "bad_field"),
        (url, buyer, {"product_id": unshown, "key": "k4"}, 409, "not_in_replay"),
        (f"/api/replays/{shop.show_id}-20000101-000000-000/buy", buyer,
         {"product_id": shop.product_id, "key": "k5"}, 404, "replay_not_found"),
        ("/api/replays/bad%20id/buy", buyer, {"product_id": shop.product_id, "key": "k6"}, 404,
         "replay_not_found"),
    ]  # fmt: skip
    for path, token, body, code_status, code in cases:
        status, reply = await shop.call("POST", path, token, **body)
        assert (status, reply["error"]["code"]) == (code_status, code), (path, body, reply)
    assert (await shop.call("GET", stock_path))[1]["product"]["stock"] == stock_before - 1
    status, reply = await shop.call("POST", f"/api/replays/{rec.replay_id}/unpublish", buyer)
    assert status == 403 and reply["error"]["code"] == "forbidden"
    status, _ = await shop.call("POST", f"/api/replays/{rec.replay_id}/unpublish", shop.host_token)
    status, reply = await shop.call("POST", url, buyer, product_id=shop.product_id, key="k8")
    assert status == 404 and reply["error"]["code"] == "replay_not_found"


async def test_an_h264_recording_replays_as_mp4_with_ranges(shop: Shop, tmp_path: Path) -> None:
    async def nothing(marks: dict[str, int]) -> None:
        return None

    rec = await record(shop, nothing, seconds=2.0, codec="h264")
    assert rec.name.endswith(".mkv")
    status, body = await shop.call("GET", f"/api/replays/{rec.replay_id}")
    assert status == 200 and body["replay"]["content_type"] == "video/mp4", body
    media = f"/api/replays/{rec.replay_id}/media"
    resp = await shop.client.get(media)
    assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp4"
    data = await resp.read()
    path = tmp_path / "replay.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        assert container.format.name.startswith("mov")
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio and container.streams.audio[0].codec_context.name == "opus"
        assert container.duration and container.duration / av.time_base > 1.5
        assert len([f for f in container.decode(video=0)]) >= 20  # decodable, not re-encoded
    resp = await shop.client.get(media, headers={"Range": "bytes=100-199"})
    assert resp.status == 206 and await resp.read() == data[100:200]
    assert resp.headers["Content-Range"] == f"bytes 100-199/{len(data)}"

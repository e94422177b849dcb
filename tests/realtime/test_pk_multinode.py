"""A PK battle between two shows on two server processes sharing one Redis.

Show A publishes to node 1, show B to node 2 (real aiortc publishers, different picture sizes so
a viewer can tell the hosts apart). Each side's aiortc viewer decodes its own host and, over a
second WHEP session on its own node, the opponent (piped from the other node's origin). Likes on
both sides and a paid order on B count into one score set seen identically in both shows; the
winner is announced once per show; a host who leaves ends the next battle for both.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from loadtest.client import call, create_show
from media.aiortc_internals import configure_ice
from media.publish import Publisher, PublishOptions
from tests.conftest import API_KEY
from tests.media.peers import wait_until
from tests.media.test_workers import WhepViewer

from .conftest import WsClient, open_ws
from .test_pk import until_live

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]
SECRET = "pk-multinode-secret"
SIZE_A, SIZE_B = (320, 240), (240, 160)


def _options(size: tuple[int, int]) -> PublishOptions:
    return PublishOptions(codec="vp8", width=size[0], height=size[1], fps=15, bitrate=250_000)


async def _guest(http: aiohttp.ClientSession, base: str, show_id: str, name: str) -> str:
    return str(
        (await call(http, "POST", f"{base}/api/shows/{show_id}/guest", None, {"name": name}))[
            "token"
        ]
    )


async def _watch(http: aiohttp.ClientSession, base: str, show_id: str, token: str) -> WsClient:
    return await open_ws(http, f"{base.replace('http', 'ws', 1)}/ws/{show_id}?token={token}")


def _sizes(viewer: WhepViewer) -> set[tuple[int, int]]:
    return set(viewer.frames)


async def test_pk_across_two_nodes(server_proc: Any, redis_url: str) -> None:
    configure_ice(["127.0.0.1"])
    args = ("--redis-url", redis_url, "--secret", SECRET, "--payment-latency-ms", "0")
    n1 = server_proc(*args, "--node-id", "pk1")
    n2 = server_proc(*args, "--node-id", "pk2")
    viewers: list[WhepViewer] = []
    publishers: list[Publisher] = []
    sockets: list[WsClient] = []
    async with aiohttp.ClientSession() as http:
        a, host_a = await create_show(http, n1.url, "PK side A", API_KEY)
        b, host_b = await create_show(http, n2.url, "PK side B", API_KEY)
        pub_a = Publisher(n1.url, a, host_a, _options(SIZE_A))
        pub_b = Publisher(n2.url, b, host_b, _options(SIZE_B))
        publishers += [pub_a, pub_b]
        try:
            token_a = await _guest(http, n1.url, a, "Ann")
            token_b = await _guest(http, n2.url, b, "Bob")
            watch_a = await _watch(http, n1.url, a, token_a)
            watch_b = await _watch(http, n2.url, b, token_b)
            studio_b = await _watch(http, n2.url, b, host_b)
            sockets += [watch_a, watch_b, studio_b]
            await pub_a.start()
            await pub_b.start()
            await until_live(http, a, n1.url)
            await until_live(http, b, n2.url)

            # A invites on node 1; B's studio (on node 2) gets the invite and accepts there.
            sent = await call(http, "POST", f"{n1.url}/api/shows/{a}/pk", host_a,
                              {"show_id": b, "duration_s": 14})  # fmt: skip
            await studio_b.until(lambda w: bool(w.of_type("pk.invited")), 15)
            invite = studio_b.of_type("pk.invited")[0]["invite"]
            accepted = await call(http, "POST", f"{n2.url}/api/shows/{b}/pk/accept", host_b,
                                  {"invite": invite})  # fmt: skip
            assert accepted["pk"]["id"] == sent["pk_id"] and accepted["pk"]["status"] == "active"
            for ws in (watch_a, watch_b):
                await ws.until(lambda w: bool(w.of_type("pk.started")), 15)

            # Each side's viewer: its own host, and the opponent over WHEP on its own node.
            view_a = await call(http, "GET", f"{n1.url}/api/shows/{a}/pk", token_a)
            view_b = await call(http, "GET", f"{n2.url}/api/shows/{b}/pk", token_b)
            assert view_a["pk"]["opponent"] == b and view_b["pk"]["opponent"] == a
            own_a, opp_a, own_b, opp_b = (WhepViewer() for _ in range(4))
            viewers += [own_a, opp_a, own_b, opp_b]
            await own_a.join_http(n1.url, a, token_a)
            await opp_a.join_http(n1.url, b, view_a["opponent_token"])
            await own_b.join_http(n2.url, b, token_b)
            await opp_b.join_http(n2.url, a, view_b["opponent_token"])
            assert opp_a.node.startswith("pk1:") and opp_b.node.startswith("pk2:")  # edges
            assert await wait_until(lambda: all(len(v.frames) >= 10 for v in viewers), 30), [
                len(v.frames) for v in viewers
            ]
            assert _sizes(own_a) == {SIZE_A} and _sizes(opp_a) == {SIZE_B}
            assert _sizes(own_b) == {SIZE_B} and _sizes(opp_b) == {SIZE_A}

            # Points on both sides, through both nodes: likes, and a paid order on B.
            await watch_a.send({"type": "like", "count": 7})
            await watch_b.send({"type": "like", "count": 2})
            product = (await call(http, "POST", f"{n2.url}/api/shows/{b}/products", host_b,
                                  {"title": "Lamp", "price": 2500, "stock": 5}))["product"]  # fmt: skip
            sale = (await call(http, "POST", f"{n2.url}/api/shows/{b}/sales", host_b,
                               {"product_id": product["id"], "quantity": 3, "price": 999,
                                "per_user_limit": 1}))["sale"]  # fmt: skip
            buyer = await _guest(http, n1.url, b, "Cat")
            reserved = await call(http, "POST", f"{n1.url}/api/sales/{sale['id']}/buy", buyer,
                                  {"key": "pk-buy-1"})  # fmt: skip
            paid = await call(http, "POST",
                              f"{n1.url}/api/orders/{reserved['reservation_id']}/pay", buyer,
                              {"key": "pk-pay-1"})  # fmt: skip
            assert paid["status"] == "paid"
            expected = {a: 7, b: 2 + 9}  # 9.99 paid at 1 point per 1.00

            for ws in (watch_a, watch_b):
                await ws.until(
                    lambda w: any(e["scores"] == expected for e in w.of_type("pk.score")), 15
                )
            assert watch_a.of_type("pk.score") == watch_b.of_type("pk.score")

            # Time up: the winner, once in each show, the same final on both.
            for ws in (watch_a, watch_b):
                await ws.until(lambda w: bool(w.of_type("pk.ended")), 25)
                await ws.pump(1.2)  # a second ticker pass on each node: still one result
            ended = [ws.of_type("pk.ended") for ws in (watch_a, watch_b)]
            assert [len(e) for e in ended] == [1, 1] and ended[0] == ended[1]
            assert ended[0][0]["winner"] == b and ended[0][0]["result"] == "win"
            assert ended[0][0]["scores"] == expected

            # A second battle; host A leaves mid-battle: it ends for both, no winner.
            sent = await call(http, "POST", f"{n2.url}/api/shows/{b}/pk", host_b,
                              {"show_id": a, "duration_s": 120})  # fmt: skip
            await call(http, "POST", f"{n1.url}/api/shows/{a}/pk/accept", host_a,
                       {"invite": sent["invite"]})  # fmt: skip
            for ws in (watch_a, watch_b):
                await ws.until(lambda w: len(w.of_type("pk.started")) == 2, 15)
            await pub_a.stop()
            for ws in (watch_a, watch_b):
                await ws.until(lambda w: len(w.of_type("pk.ended")) == 2, 15)
            last = [ws.of_type("pk.ended")[-1] for ws in (watch_a, watch_b)]
            assert last[0] == last[1] and last[0]["reason"] == "host_left"
            assert last[0]["result"] == "cancelled" and last[0]["winner"] is None
            state = await call(http, "GET", f"{n2.url}/api/shows/{b}/pk", host_b)
            assert state["pk"] is None  # B is free again
        finally:
            for ws in sockets:
                await ws.close()
            for viewer in viewers:
                await viewer.close()
            for publisher in publishers:
                await publisher.stop()
    for node in (n1, n2):
        assert "Traceback" not in node.log(), node.log()[-3000:]

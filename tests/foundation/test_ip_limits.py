"""Per-IP limits: WebSocket connects (rate and open sockets), unauthenticated HTTP, trusted proxies."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from server.ratelimit import KeyedLimiter
from tests.conftest import OPERATOR


async def _node(aiohttp_client, settings: Settings, **limits: object) -> TestClient:
    return await aiohttp_client(create_app(replace(settings, **limits)))


async def _show(node: TestClient) -> tuple[str, str]:
    body = await (await node.post("/api/shows", json={}, headers=OPERATOR)).json()
    return body["show"]["id"], body["host_token"]


async def test_websocket_connect_rate_per_ip(aiohttp_client, settings: Settings) -> None:
    node = await _node(aiohttp_client, settings, ws_connects_per_ip=0.01, ws_connect_burst=3)
    show_id, host = await _show(node)
    statuses = []
    for _ in range(5):
        ws = None
        try:
            ws = await node.ws_connect(f"/ws/{show_id}?token={host}", protocols=("liveshop.json",))
            statuses.append(101)
        except Exception as exc:  # aiohttp's WSServerHandshakeError carries the status
            statuses.append(getattr(exc, "status", 0))
        finally:
            if ws is not None:
                await ws.close()
    assert statuses == [101, 101, 101, 429, 429]


async def test_open_websockets_per_ip_are_capped(aiohttp_client, settings: Settings) -> None:
    node = await _node(aiohttp_client, settings, ws_max_per_ip=2, ws_connects_per_ip=0)
    show_id, host = await _show(node)
    url = f"/ws/{show_id}?token={host}"
    first = await node.ws_connect(url, protocols=("liveshop.json",))
    second = await node.ws_connect(url, protocols=("liveshop.json",))
    assert (await second.receive_json(timeout=5))["type"] == "welcome"
    resp = await node.get(url, headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                        "Sec-WebSocket-Version": "13",
                                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})  # fmt: skip
    assert resp.status == 429 and (await resp.json())["error"]["code"] == "rate_limited"
    await first.close()
    for _ in range(50):  # the server side notices the close and frees the slot
        third = None
        try:
            third = await node.ws_connect(url, protocols=("liveshop.json",))
            break
        except Exception:
            await asyncio.sleep(0.05)
    assert third is not None and (await third.receive_json(timeout=5))["type"] == "welcome"
    await third.close()
    await second.close()


async def test_unauthenticated_http_is_limited_per_ip(aiohttp_client, settings: Settings) -> None:
    node = await _node(aiohttp_client, settings, http_anon_per_ip=0.01, http_anon_burst=4)
    show_id, host = await _show(node)  # authenticated: not counted
    statuses = [(await node.get("/api/shows")).status for _ in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    resp = await node.get("/api/shows")
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"]["code"] == "rate_limited"
    # Requests with a token, probes and scrapes still pass.
    resp = await node.get(
        f"/api/shows/{show_id}/stats", headers={"Authorization": f"Bearer {host}"}
    )
    assert resp.status == 200
    assert (await node.get("/healthz")).status == 200
    assert (await node.get("/metrics")).status == 200


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    aiohttp_client, settings: Settings
) -> None:
    limited = dict(http_anon_per_ip=0.01, http_anon_burst=2)
    trusting = await _node(aiohttp_client, settings, trusted_proxies=["127.0.0.0/8"], **limited)
    for client_ip in ("198.51.100.7", "198.51.100.8"):
        headers = {"X-Forwarded-For": f"203.0.113.1, {client_ip}"}
        statuses = [(await trusting.get("/api/shows", headers=headers)).status for _ in range(3)]
        assert statuses == [200, 200, 429], client_ip  # each forwarded client has its own bucket
    untrusting = await _node(aiohttp_client, settings, **limited)
    statuses = [
        (await untrusting.get("/api/shows", headers={"X-Forwarded-For": f"198.51.100.{i}"})).status
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]  # a spoofed header does not buy a fresh bucket


def test_keyed_limiter_stays_bounded() -> None:
    limiter = KeyedLimiter(rate=1000.0, burst=1, max_keys=100)
    for i in range(1000):
        assert limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter.buckets) <= 100
    unlimited = KeyedLimiter(rate=0, burst=1)
    assert all(unlimited.take("x") for _ in range(1000)) and not unlimited.buckets


async def test_a_made_up_token_does_not_escape_the_anonymous_limit(
    aiohttp_client, settings: Settings
) -> None:
    node = await _node(aiohttp_client, settings, http_anon_per_ip=0.01, http_anon_burst=2)
    show_id, host = await _show(node)
    fake = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.bogus"}
    statuses = [(await node.get("/api/shows", headers=fake)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    real = {"Authorization": f"Bearer {host}"}
    assert [(await node.get("/api/shows", headers=real)).status for _ in range(3)] == [200] * 3
    assert (await node.get("/api/shows", headers=OPERATOR)).status == 200
    assert show_id

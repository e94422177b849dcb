"""Commerce fixtures: a show with a product, helpers to make sales, guests and buy attempts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from loadtest.client import ShowSocket, call, create_show
from server import auth
from server.appkeys import REDIS
from server.commerce import keys as ck
from server.redis.broker import decode
from server.redis.keys import channel
from tests.conftest import API_KEY, ServerProcess

NODES_SECRET = "test-secret"


@dataclass
class Shop:
    """A show with one product (stock 100, price 2000) and helpers around the HTTP API."""

    client: TestClient
    show_id: str
    host_token: str
    product_id: str
    guest: Callable[..., Awaitable[str]]
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.host_token}"}

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def call(
        self, method: str, path: str, token: str | None = None, **body: Any
    ) -> tuple[int, dict[str, Any]]:
        headers = self.bearer(token) if token else {}
        resp = await self.client.request(method, path, json=body if body else None, headers=headers)
        return resp.status, await resp.json()

    async def product(self, **fields: Any) -> str:
        status, body = await self.call(
            "POST",
            f"/api/shows/{self.show_id}/products",
            self.host_token,
            **{"title": "Thing", "price": 1500, "stock": 10, **fields},
        )
        assert status == 201, body
        return str(body["product"]["id"])

    async def sale(self, **fields: Any) -> dict[str, Any]:
        body = {
            "product_id": self.product_id,
            "quantity": 5,
            "price": 999,
            "per_user_limit": 1,
            **fields,
        }
        status, reply = await self.call(
            "POST", f"/api/shows/{self.show_id}/sales", self.host_token, **body
        )
        assert status == 201, reply
        return dict(reply["sale"])

    async def buyer(self, name: str | None = None) -> str:
        return await self.guest(self.show_id, name)

    async def buy(self, sale_id: str, token: str, key: str) -> dict[str, Any]:
        status, body = await self.call("POST", f"/api/sales/{sale_id}/buy", token, key=key)
        assert status == 200, body
        return body

    async def get_sale(self, sale_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/api/sales/{sale_id}")
        assert status == 200, body
        return dict(body["sale"])

    async def reservations(self) -> list[dict[str, Any]]:
        raw = await self.client.app[REDIS].hgetall(ck.reservations(self.show_id))
        return [json.loads(v) for v in raw.values()]


@pytest.fixture
async def shop(client: TestClient, make_show: Any, guest_token: Any) -> Shop:
    show_id, host_token = await make_show("Commerce test")
    resp = await client.post(
        f"/api/shows/{show_id}/products",
        json={"title": "Aero Runner", "price": 2000, "stock": 100, "currency": "USD"},
        headers={"Authorization": f"Bearer {host_token}"},
    )
    assert resp.status == 201, await resp.text()
    product_id = (await resp.json())["product"]["id"]
    return Shop(client, show_id, host_token, product_id, guest_token)


class EventLog:
    """Events published to one show, read from Redis pub/sub."""

    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub
        self.seen: list[dict[str, Any]] = []

    async def drain(self, quiet_s: float = 0.3) -> list[dict[str, Any]]:
        while True:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=quiet_s)
            if message is None:
                return self.seen
            self.seen.append(decode(message["data"]).event)

    async def of(self, kind: str, quiet_s: float = 0.3) -> list[dict[str, Any]]:
        await self.drain(quiet_s)
        return [e for e in self.seen if e.get("type") == kind]

    async def wait_for(
        self, kind: str, timeout_s: float = 10.0, **match: Any
    ) -> list[dict[str, Any]]:
        """Events of ``kind`` (with the given field values) once at least one arrived, or [] at the deadline."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            found = [
                e
                for e in await self.of(kind, quiet_s=0.1)
                if all(e.get(f) == v for f, v in match.items())
            ]
            if found or asyncio.get_running_loop().time() > deadline:
                return found


@pytest.fixture
async def events(redis_url: str, shop: Shop) -> AsyncIterator[EventLog]:
    """Every event published to the shop's show from now on."""
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel(shop.show_id))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    try:
        yield EventLog(pubsub)
    finally:
        await pubsub.aclose()
        await redis.aclose()


@dataclass
class TwoNodes:
    """Two ``python -m server`` processes on the test Redis, one token secret, one HTTP session."""

    nodes: list[ServerProcess]
    http: aiohttp.ClientSession
    sockets: list[ShowSocket] = field(default_factory=list)

    @property
    def a(self) -> str:
        return self.nodes[0].url

    @property
    def b(self) -> str:
        return self.nodes[1].url

    def url(self, i: int) -> str:
        """Node ``i`` modulo two: spread requests over both by any counter."""
        return self.nodes[i % 2].url

    async def show(self, title: str) -> tuple[str, str]:
        """A show created on node A (operator key): (show id, host token)."""
        return await create_show(self.http, self.a, title, API_KEY)

    async def call(self, method: str, url: str, token: str | None = None, body: Any = None) -> Any:
        return await call(self.http, method, url, token, body)

    @staticmethod
    def viewer(show_id: str, name: str) -> str:
        """A viewer token both nodes accept (signed with their secret)."""
        return auth.issue(NODES_SECRET, show_id=show_id, role="viewer", name=name)

    async def watch(self, show_id: str, on: str | None = None) -> list[dict[str, Any]]:
        """Every event a viewer connected to node ``on`` (default B) receives, from now on."""
        events: list[dict[str, Any]] = []
        socket = ShowSocket(
            self.http, on or self.b, show_id, self.viewer(show_id, "Watcher"), events.extend
        )
        await socket.connect()
        self.sockets.append(socket)
        return events


async def wait_for(check: Callable[[], Awaitable[Any]], timeout_s: float = 20.0) -> Any:
    """``await check()`` until it is truthy (its value) or fail at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


@pytest.fixture
async def two_nodes(redis_url: str, server_proc: Any) -> AsyncIterator[TwoNodes]:
    """Two server processes sharing the test Redis (the multi-node commerce tests)."""
    nodes = [server_proc("--redis-url", redis_url, "--secret", NODES_SECRET) for _ in range(2)]
    async with aiohttp.ClientSession() as http:
        cluster = TwoNodes(nodes, http)
        try:
            yield cluster
        finally:
            for socket in cluster.sockets:
                await socket.close()

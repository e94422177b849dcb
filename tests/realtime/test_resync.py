"""Events published while a node's pub/sub connection is down reach its clients after the reconnect.

The gap is made with real parts: this node's pub/sub connection is dropped and its reader held
while the show goes on (chat over WebSocket, a sale and a pin over HTTP, all published to the
real Redis); then the reader runs again, redis-py reconnects and resubscribes, and the hub resyncs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.appkeys import REDIS, SETTINGS
from server.commerce import keys as ck
from server.ws.hub import HUBS


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Gap:
    """Holds this node's pub/sub feed down between ``__aenter__`` and ``__aexit__``."""

    def __init__(self, app: Any) -> None:
        self.subscriber = app[HUBS].subscriber

    async def __aenter__(self) -> None:
        reader = self.subscriber.reader
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await self.subscriber.pubsub.connection.disconnect()

    async def __aexit__(self, *exc: object) -> None:
        self.subscriber.reader = asyncio.create_task(self.subscriber._read_loop())


@pytest.fixture
async def show(client: Any, make_show: Any) -> AsyncIterator[tuple[str, str, str]]:
    show_id, host = await make_show("resync")
    resp = await client.post(
        f"/api/shows/{show_id}/products",
        json={"title": "Boot", "price": 900, "stock": 20},
        headers=_auth(host),
    )
    assert resp.status == 201, await resp.text()
    yield show_id, host, (await resp.json())["product"]["id"]


async def test_missed_chat_and_shop_state_are_resent(
    client: Any, show: tuple[str, str, str], guest_token: Any, connect: Any
) -> None:
    show_id, host, product_id = show
    client.app[SETTINGS].chat_rate = client.app[SETTINGS].chat_burst = 100
    viewer = await connect(show_id, await guest_token(show_id, "Vi"))
    sender = await connect(show_id, await guest_token(show_id, "Se"))
    hubs = client.app[HUBS]
    before = hubs.resyncs
    # A sale that ended long ago is not re-sent (a page would load it over the live one).
    resp = await client.post(
        f"/api/shows/{show_id}/sales",
        json={"product_id": product_id, "quantity": 1, "price": 500, "per_user_limit": 1},
        headers=_auth(host),
    )
    old_sale = (await resp.json())["sale"]["id"]
    assert (await client.post(f"/api/sales/{old_sale}/end", headers=_auth(host))).ok
    await client.app[REDIS].hset(
        ck.sales(show_id), f"{old_sale}:end", int(time.time() * 1000) - 3_600_000
    )
    async with Gap(client.app):
        for i in range(3):
            assert (await sender.request({"type": "chat", "text": f"gap {i}"}))["type"] == "reply"
        resp = await client.post(
            f"/api/shows/{show_id}/sales",
            json={"product_id": product_id, "quantity": 3, "price": 500, "per_user_limit": 1},
            headers=_auth(host),
        )
        assert resp.status == 201, await resp.text()
        sale_id = (await resp.json())["sale"]["id"]
        assert (await client.post(f"/api/products/{product_id}/pin", headers=_auth(host))).ok
        resp = await client.post(
            f"/api/shows/{show_id}/lotteries", json={"prize": "Hat"}, headers=_auth(host)
        )
        assert resp.status == 201, await resp.text()
        lottery_id = (await resp.json())["lottery"]["id"]
        await viewer.pump(0.3)
        # Really cut off: nothing of what happened in the gap arrived.
        assert not viewer.chats()
        assert sale_id not in [e.get("sale_id") for e in viewer.events]
    await viewer.until(lambda c: bool(c.of_type("resync")), 10)
    await viewer.until(lambda c: sale_id in [e.get("sale_id") for e in c.events], 5)
    assert [c["text"] for c in viewer.chats()] == ["gap 0", "gap 1", "gap 2"]
    resync = viewer.of_type("resync")[0]
    assert resync["show"]["id"] == show_id and resync["last_id"] == viewer.chats()[-1]["id"]
    assert resync["epoch"] == viewer.welcome["epoch"]
    pinned = [e for e in viewer.of_type("products") if e["pinned"]]
    assert pinned and pinned[-1]["pinned"][0]["id"] == product_id
    started = viewer.of_type("sale.started")[-1]
    assert started["sale_id"] == sale_id and started["left"] == 3
    await viewer.until(lambda c: bool(c.of_type("lottery.created")), 5)
    assert viewer.of_type("lottery.created")[0]["lottery"]["id"] == lottery_id
    assert "seed" not in viewer.of_type("lottery.created")[0]["lottery"]
    assert hubs.resyncs == before + 1
    after = viewer.events[viewer.events.index(resync) :]
    assert old_sale not in [e.get("sale_id") for e in after]
    # Live delivery goes on, without repeating the resent chat.
    assert (await sender.request({"type": "chat", "text": "after"}))["type"] == "reply"
    await viewer.until(lambda c: c.chats()[-1]["text"] == "after", 5)
    assert [c["text"] for c in viewer.chats()] == ["gap 0", "gap 1", "gap 2", "after"]


async def test_gap_longer_than_history_says_history_lost(
    client: Any, show: tuple[str, str, str], guest_token: Any, connect: Any
) -> None:
    show_id, _, _ = show
    client.app[SETTINGS].chat_history = 5
    client.app[SETTINGS].chat_rate = client.app[SETTINGS].chat_burst = 100
    viewer = await connect(show_id, await guest_token(show_id, "Vi"))
    sender = await connect(show_id, await guest_token(show_id, "Se"))
    assert (await sender.request({"type": "chat", "text": "seen"}))["type"] == "reply"
    await viewer.until(lambda c: len(c.chats()) == 1, 5)
    async with Gap(client.app):
        for i in range(12):
            await sender.request({"type": "chat", "text": f"gap {i}"})
    await viewer.until(lambda c: bool(c.of_type("resync")), 10)
    lost = viewer.of_type("history_lost")
    assert lost and lost[0]["reason"] == "too_old" and lost[0]["since"] == viewer.chats()[0]["id"]
    assert [c["text"] for c in viewer.chats()] == ["seen"]

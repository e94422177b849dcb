"""The per-show buy micro-batcher: attempts travel to buy.lua packed, runners come and go."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.appkeys import SETTINGS
from server.auth import verify
from server.commerce import sales


async def test_names_and_keys_reach_the_reservation_verbatim(shop: Any) -> None:
    sale = await shop.sale(quantity=3)
    name = 'Zoë | "Ä" 😀 a|b'
    token = await shop.buyer(name)
    key = "k:1.a_b-c"
    reply = await shop.buy(sale["id"], token, key)
    assert reply["outcome"] == "reserved"
    assert await shop.buy(sale["id"], token, key) == reply  # the repeat finds the same record
    (order,) = await shop.reservations()
    claims = verify(shop.client.app[SETTINGS].secret, token)
    assert (order["id"], order["name"], order["key"], order["user_id"]) == (
        reply["reservation_id"],
        claims.name,
        key,
        claims.user_id,
    )
    assert "|" in order["name"] and "😀" in order["name"]


async def test_a_batch_of_many_attempts_is_decided_in_one_call(shop: Any) -> None:
    sale = await shop.sale(quantity=5, per_user_limit=1)
    tokens = [await shop.buyer(f"B{i}") for i in range(40)]
    batcher_before = shop.client.app[sales.BATCHERS].get(shop.show_id)
    calls_before = batcher_before.batches if batcher_before else 0
    replies = await asyncio.gather(*(shop.buy(sale["id"], t, "k") for t in tokens))
    outcomes = [r["outcome"] for r in replies]
    assert outcomes.count("reserved") == 5 and outcomes.count("sold_out") == 35
    batcher = shop.client.app[sales.BATCHERS][shop.show_id]
    assert batcher.attempts >= 40
    assert batcher.batches - calls_before < 40  # micro-batched, not one call per attempt


async def test_runners_that_exited_idle_are_restarted(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sales, "IDLE_EXIT_S", 0.05)
    sale = await shop.sale(quantity=5, per_user_limit=5)
    token = await shop.buyer("Idle")
    assert (await shop.buy(sale["id"], token, "first"))["outcome"] == "reserved"
    batcher = shop.client.app[sales.BATCHERS][shop.show_id]
    await asyncio.wait(list(batcher.tasks), timeout=5)
    await asyncio.sleep(0)  # done callbacks run on the next loop pass
    assert not batcher.tasks  # both runners left after the idle timeout
    assert (await shop.buy(sale["id"], token, "second"))["outcome"] == "reserved"
    assert len(batcher.tasks) == sales.IN_FLIGHT

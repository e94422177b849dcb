"""The sold-out short-circuit on the node: no Redis round trip once sold out, same outcomes and keys."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from server.appkeys import REDIS
from server.commerce import keys as ck
from server.commerce.sales import BATCHERS, SOLDOUT

from .conftest import Shop


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_sold_out_attempts_are_answered_on_the_node_until_stock_returns(shop: Shop) -> None:
    app = shop.client.app
    sale = await shop.sale(quantity=1, per_user_limit=1)
    sale_id = sale["id"]
    holder = await shop.buyer("Holder")
    first = await shop.buy(sale_id, holder, "h1")
    assert first["outcome"] == "reserved"
    late = await shop.buyer("Late")
    others = [await shop.buyer(f"O{i}") for i in range(20)]
    assert (await shop.buy(sale_id, late, "l1"))["outcome"] == "sold_out"  # through Redis
    await until(lambda: sale_id in app[SOLDOUT].flags)
    batcher = app[BATCHERS][shop.show_id]
    batches = batcher.batches
    answers = await asyncio.gather(*(shop.buy(sale_id, token, "o1") for token in others))
    assert all(a == {"outcome": "sold_out", "sale_id": sale_id} for a in answers)
    assert batcher.batches == batches and batcher.short_circuited >= 20  # no Redis round trip
    # The holder's retry still goes to Redis and replays the first answer unchanged.
    assert await shop.buy(sale_id, holder, "h1") == first
    assert batcher.batches > batches
    # Short-circuited keys are recorded: they keep `sold_out` when stock comes back.
    redis = app[REDIS]
    recorded = ck.buy_keys(shop.show_id)
    for _ in range(250):
        if await redis.hget(recorded, f"{sale_id}|{_user(shop, others[-1])}|o1"):
            break
        await asyncio.sleep(0.02)
    assert await redis.hget(recorded, f"{sale_id}|{_user(shop, others[-1])}|o1") == "sold_out"
    # Cancelling the reservation returns the unit: sale.stock clears the flag on the node.
    status, _ = await shop.call("POST", f"/api/orders/{first['reservation_id']}/cancel", holder)
    assert status == 200
    await until(lambda: sale_id not in app[SOLDOUT].flags)
    assert (await shop.buy(sale_id, others[0], "o1"))["outcome"] == "sold_out"  # its first answer
    fresh = await shop.buy(sale_id, others[0], "o2")
    assert fresh["outcome"] == "reserved"


async def test_limit_reached_holder_and_ended_sale_keep_the_redis_answers(shop: Shop) -> None:
    app = shop.client.app
    sale = await shop.sale(quantity=2, per_user_limit=2)
    sale_id = sale["id"]
    holder = await shop.buyer("Two")
    assert (await shop.buy(sale_id, holder, "a"))["outcome"] == "reserved"
    assert (await shop.buy(sale_id, holder, "b"))["outcome"] == "reserved"
    other = await shop.buyer("Other")
    assert (await shop.buy(sale_id, other, "x"))["outcome"] == "sold_out"
    await until(lambda: sale_id in app[SOLDOUT].flags)
    assert (await shop.buy(sale_id, holder, "c"))["outcome"] == "limit_reached"
    status, _ = await shop.call("POST", f"/api/sales/{sale_id}/end", shop.host_token)
    assert status == 200
    await until(lambda: sale_id not in app[SOLDOUT].flags, 10)
    assert (await shop.buy(sale_id, other, "y"))["outcome"] == "ended"


def _user(shop: Shop, token: str) -> str:
    from server.auth import verify

    return verify("test-secret", token, shop.show_id).user_id

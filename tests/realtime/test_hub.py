"""Hub lifecycle on one node: subscribe on first viewer, unsubscribe when idle, resubscribe."""

from __future__ import annotations

import asyncio

from server.realtime.presence import viewer_counts
from server.redis.broker import publish
from server.ws import hub as hub_module
from server.ws.hub import HUBS


async def test_idle_hub_unsubscribes_and_comes_back(
    client, make_show, guest_token, connect, monkeypatch
):
    monkeypatch.setattr(hub_module, "IDLE_UNSUBSCRIBE_S", 0.2)
    show_id, host = await make_show()
    hubs = client.app[HUBS]
    first = await connect(show_id, await guest_token(show_id))
    assert show_id in hubs.hubs
    await first.close()
    for _ in range(40):
        if show_id not in hubs.hubs:
            break
        await asyncio.sleep(0.1)  # noqa: ASYNC110 - waiting for the node's presence tick
    assert show_id not in hubs.hubs
    assert (await viewer_counts(client.app, show_id))[0] == 0
    again = await connect(show_id, host)
    await publish(client.app, show_id, {"type": "sale.started", "n": 1})
    await again.until(lambda c: bool(c.of_type("sale.started")))
    assert again.of_type("sale.started") == [{"type": "sale.started", "n": 1}]


async def test_staff_only_events_reach_only_staff(client, make_show, guest_token, connect):
    show_id, host = await make_show()
    staff = await connect(show_id, host, codec="liveshop.msgpack")
    viewer = await connect(show_id, await guest_token(show_id))
    await publish(client.app, show_id, {"type": "stats", "orders": 3}, staff_only=True)
    await publish(client.app, show_id, {"type": "product.pinned", "id": "p1"})
    for c in (staff, viewer):
        await c.until(lambda c: bool(c.of_type("product.pinned")))
    assert staff.of_type("stats") == [{"type": "stats", "orders": 3}]
    assert viewer.of_type("stats") == []


async def test_hub_resubscribes_after_losing_its_pubsub_connection(client, make_show, connect):
    from server.appkeys import REDIS

    show_id, host = await make_show()
    viewer = await connect(show_id, host)
    await publish(client.app, show_id, {"type": "sale.started", "n": 1})
    await viewer.until(lambda c: len(c.of_type("sale.started")) == 1)
    killed = await client.app[REDIS].execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed >= 1
    for n in range(2, 40):  # events published while the node reconnects are lost; later ones arrive
        await publish(client.app, show_id, {"type": "sale.started", "n": n})
        try:
            await viewer.until(lambda c: len(c.of_type("sale.started")) > 1, 0.25)
            break
        except AssertionError:
            continue
    assert len(viewer.of_type("sale.started")) > 1

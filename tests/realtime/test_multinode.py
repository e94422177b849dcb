"""Several ``python -m server`` processes on one Redis serve one show together."""

from __future__ import annotations

import signal

import aiohttp
import pytest

from tests.conftest import API_KEY, http_json

from .conftest import open_ws

pytestmark = pytest.mark.slow


def ws_url(server, show_id: str, token: str, **query: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return server.url.replace("http", "ws", 1) + f"/ws/{show_id}?token={token}{extra}"


async def test_two_nodes_fan_out_in_order_and_share_presence(server_proc, redis_url):
    node_a = server_proc("--redis-url", redis_url, "--secret", "multi")
    node_b = server_proc("--redis-url", redis_url, "--secret", "multi")
    status, body = http_json(node_a.url + "/api/shows", "POST", {"title": "two nodes"}, API_KEY)
    assert status == 201
    show_id, host = body["show"]["id"], body["host_token"]
    _, guest = http_json(node_b.url + f"/api/shows/{show_id}/guest", "POST", {"name": "Bea"})
    async with aiohttp.ClientSession() as session:
        sender = await open_ws(session, ws_url(node_a, show_id, host), "liveshop.msgpack")
        on_a = await open_ws(session, ws_url(node_a, show_id, guest["token"]))
        on_b = await open_ws(session, ws_url(node_b, show_id, guest["token"]), "liveshop.msgpack")
        for i in range(49):
            await sender.send({"type": "chat", "text": f"n{i}"})
        await sender.request(
            {"type": "chat", "text": "n49"}
        )  # one connection's messages run in order
        reply = await on_b.request({"type": "chat", "text": "from b"})
        assert reply["type"] == "reply"
        for viewer in (on_a, on_b, sender):
            await viewer.until(lambda c: len(c.chats()) >= 51, 10)
            texts = [c["text"] for c in viewer.chats()]
            assert texts == [f"n{i}" for i in range(50)] + ["from b"]
        # Presence is summed over both nodes (the guest's two connections; the host is staff).
        await on_b.until(lambda c: any(e["viewers"] == 2 for e in c.of_type("presence")), 6)
        # Graceful shutdown of node B closes its sockets with 1001; node A keeps serving.
        node_b.stop(signal.SIGTERM)
        await on_b.until(lambda c: c.ws.closed, 10)
        assert on_b.close_code == 1001
        await on_a.until(lambda c: any(e["viewers"] == 1 for e in c.of_type("presence")), 12)
        assert (await on_a.request({"type": "ping"}))["type"] == "reply"

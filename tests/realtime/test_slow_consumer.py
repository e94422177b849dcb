"""Slow consumers: a stalled client never delays the others, its queue stays bounded, it is told
what it missed, and a client that stays stuck is closed with 1013."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time

from server.redis.broker import publish
from server.ws import connection
from server.ws.hub import HUBS
from tests.waits import wait_until

BIG = "x" * 20_000


async def raw_ws(
    host: str, port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that reads only when asked: tiny receive buffer, tiny stream limit."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2048)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: liveshop.json\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    size = b1 & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(size)


async def joined(app, name: str) -> connection.Connection:
    """The server side of the viewer called ``name``, once the hub has registered it."""

    def find() -> connection.Connection | None:
        return next((c for c in app[HUBS].connections if c.claims.name == name), None)

    assert await wait_until(lambda: find() is not None, 5), f"{name} never joined"
    found = find()
    assert found is not None
    return found


async def test_stalled_viewer_is_isolated_bounded_and_told_what_it_skipped(
    client, make_show, guest_token, connect
):
    show_id, host = await make_show()
    fast = await connect(show_id, await guest_token(show_id, "Fast"))
    token = await guest_token(show_id, "Slow")
    reader, writer = await raw_ws(client.host, client.port, f"/ws/{show_id}?token={token}")
    slow = await joined(client.app, "Slow")
    app = client.app
    latencies = []
    for round_ in range(40):
        for i in range(20):
            await publish(
                app, show_id, {"type": "chat", "id": f"{round_}-{i}", "text": BIG}, droppable=True
            )
        marker = f"m{round_}"
        sent_at = time.monotonic()
        await publish(app, show_id, {"type": "sale.stock", "marker": marker})
        await fast.until(lambda c, m=marker: any(e.get("marker") == m for e in c.events), 5)
        latencies.append(time.monotonic() - sent_at)
        # Droppable chat is held for at most MAX_BACKLOG batches; older batches keep only undroppable events.
        assert (
            sum(1 for q in slow.backlog if q.batch is not None and not q.essential)
            <= connection.MAX_BACKLOG
        )
    assert max(latencies) < 2.0, latencies  # generous for a busy shared CPU; typically ~50 ms
    assert len([e for e in fast.events if e.get("type") == "chat"]) == 800
    assert slow.skipped > 0 or any(q.essential for q in slow.backlog)

    # The slow viewer catches up: every undroppable event, in order, and a count of the skipped chat.
    events: list[dict] = []
    deadline = time.monotonic() + 10
    while not any(e.get("marker") == "m39" for e in events) and time.monotonic() < deadline:
        opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
        if opcode == 1:
            message = json.loads(payload)
            if message["type"] == "batch":
                events.extend(message["events"])
    markers = [e["marker"] for e in events if e.get("type") == "sale.stock"]
    assert markers == [f"m{i}" for i in range(40)]
    skipped = sum(e["count"] for e in events if e["type"] == "skipped")
    delivered = len([e for e in events if e["type"] == "chat"])
    assert skipped > 0 and delivered + skipped == 800
    writer.close()


async def test_stuck_viewer_is_closed_1013(client, make_show, guest_token, connect, monkeypatch):
    monkeypatch.setattr(connection, "STUCK_S", 0.5)
    show_id, host = await make_show()
    fast = await connect(show_id, await guest_token(show_id, "Fast"))
    token = await guest_token(show_id, "Stuck")
    reader, writer = await raw_ws(client.host, client.port, f"/ws/{show_id}?token={token}")
    stuck = await joined(client.app, "Stuck")
    for i in range(300):
        await publish(client.app, show_id, {"type": "order.paid", "n": i, "pad": BIG})
        if i % 50 == 0:  # the fast viewer keeps up while the stuck one's backlog grows
            await fast.until(lambda c, n=i: any(e.get("n") == n for e in c.events), 10)
    await fast.until(lambda c: any(e.get("n") == 299 for e in c.events), 10)
    # the stuck check (0.5 s) and the close, within 10 s
    assert await wait_until(lambda: stuck not in client.app[HUBS].connections, 10)
    assert stuck.closing
    assert [e["n"] for e in fast.events if e.get("type") == "order.paid"] == list(range(300))
    assert (await fast.request({"type": "ping"}))["type"] == "reply"
    writer.close()

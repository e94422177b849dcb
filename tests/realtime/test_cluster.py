"""The real-time layer on a 3-node Redis Cluster (built with CLUSTER ADDSLOTS/MEET, no redis-cli)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from server.app import create_app
from server.config import Settings
from server.redis.embedded import find_redis_server
from tests.conftest import API_KEY, OPERATOR, free_port

from .conftest import open_ws

pytestmark = pytest.mark.slow
SLOTS = 16384


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            port -= 30000
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three masters sharing the 16384 slots; yields ``redis+cluster://`` for the first."""
    binary = find_redis_server()
    base = tmp_path_factory.mktemp("cluster")
    ports = [cluster_port() for _ in range(3)]
    procs = []
    for port in ports:
        node_dir = Path(base) / str(port)
        node_dir.mkdir()
        procs.append(subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--dir", str(node_dir), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
    try:
        clients = [
            redis.Redis(
                host="127.0.0.1", port=p, decode_responses=True, socket_timeout=5, retry=None
            )
            for p in ports
        ]
        for client, proc in zip(clients, procs, strict=True):
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(
                            f"redis-server cluster node on port {proc.args[2]} did not start"
                        )
                    time.sleep(0.05)
        share = SLOTS // 3
        for i, client in enumerate(clients):
            last = SLOTS if i == 2 else (i + 1) * share
            client.execute_command("CLUSTER", "ADDSLOTS", *range(i * share, last))
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        deadline = time.monotonic() + 20
        while not all(c.cluster("info")["cluster_state"] == "ok" for c in clients):
            assert time.monotonic() < deadline, "cluster did not converge"
            time.sleep(0.1)
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(5)


async def test_chat_fan_out_and_recovery_on_a_cluster(aiohttp_client, cluster_url, tmp_path):
    settings = Settings(
        redis_url=cluster_url, data_dir=tmp_path, secret="cluster", api_key=[API_KEY]
    )
    node_a = await aiohttp_client(create_app(settings))
    node_b = await aiohttp_client(
        create_app(
            Settings(redis_url=cluster_url, data_dir=tmp_path, secret="cluster", api_key=[API_KEY])
        )
    )
    resp = await node_a.post("/api/shows", json={"title": "on a cluster"}, headers=OPERATOR)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    show_id, host = body["show"]["id"], body["host_token"]
    sender = await open_ws(node_a, f"/ws/{show_id}?token={host}")
    viewer = await open_ws(node_b, f"/ws/{show_id}?token={host}", "liveshop.msgpack")
    for i in range(19):
        await sender.send({"type": "chat", "text": f"k{i}"})
    await sender.request({"type": "chat", "text": "k19"})
    await viewer.until(lambda c: len(c.chats()) == 20, 10)
    assert [c["text"] for c in viewer.chats()] == [f"k{i}" for i in range(20)]
    back = await open_ws(
        node_b,
        f"/ws/{show_id}?token={host}&since={viewer.chats()[9]['id']}&epoch={viewer.welcome['epoch']}",
    )
    assert back.welcome["recovered"] is True
    assert [c["text"] for c in back.chats()] == [f"k{i}" for i in range(10, 20)]
    await sender.send({"type": "like", "count": 7})
    await viewer.until(lambda c: any(e["total"] == 7 for e in c.of_type("likes")), 5)
    for ws in (sender, viewer, back):
        await ws.close()


async def test_flash_sale_on_a_cluster(aiohttp_client, cluster_url, tmp_path):
    """Commerce's background work (per-show timers, order consumer) pipelines across slots."""
    node_a = await aiohttp_client(
        create_app(
            Settings(redis_url=cluster_url, data_dir=tmp_path, secret="cluster", api_key=[API_KEY])
        )
    )
    node_b = await aiohttp_client(
        create_app(
            Settings(redis_url=cluster_url, data_dir=tmp_path, secret="cluster", api_key=[API_KEY])
        )
    )
    shows = []
    for title in ("first", "second", "third"):  # several shows: their keys sit in different slots
        resp = await node_a.post("/api/shows", json={"title": title}, headers=OPERATOR)
        body = await resp.json()
        host = {"Authorization": f"Bearer {body['host_token']}"}
        resp = await node_a.post(
            f"/api/shows/{body['show']['id']}/products",
            json={"title": "Thing", "price": 100, "stock": 10},
            headers=host,
        )
        product_id = (await resp.json())["product"]["id"]
        resp = await node_a.post(
            f"/api/shows/{body['show']['id']}/sales",
            json={"product_id": product_id, "quantity": 3, "price": 99},
            headers=host,
        )
        assert resp.status == 201, await resp.text()
        shows.append((body["show"]["id"], body["host_token"], (await resp.json())["sale"]["id"]))
    for show_id, host_token, sale_id in shows:
        viewer = await open_ws(node_b, f"/ws/{show_id}?token={host_token}")
        resp = await node_a.post(
            f"/api/sales/{sale_id}/buy",
            json={"key": "once"},
            headers={"Authorization": f"Bearer {host_token}"},
        )
        assert (await resp.json())["outcome"] == "reserved"
        await viewer.until(lambda c, s=sale_id: any(e["sale_id"] == s and e["left"] == 2 for e in c.of_type("sale.stock")), 10)  # fmt: skip
        resp = await node_b.get(
            f"/api/shows/{show_id}/orders", headers={"Authorization": f"Bearer {host_token}"}
        )
        assert resp.status == 200, await resp.text()
        assert [o["sale_id"] for o in (await resp.json())["orders"]] == [sale_id]
        await viewer.close()

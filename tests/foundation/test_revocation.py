"""Revocation and bans reach every node at once: HTTP, WebSocket and WHEP sessions; WHEP DELETE ownership."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import jwt
import pytest
from aiohttp.test_utils import TestClient

from media.light_viewer import LightViewer
from media.publish import Publisher, PublishOptions
from server.app import create_app
from server.config import Settings
from server.media_api import RELAY
from server.revocation import REVOCATIONS
from tests.conftest import API_KEY, OPERATOR
from tests.media.peers import SMALL, wait_until

API_ID, API_SECRET = API_KEY.split(":", 1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


@pytest.fixture
async def two_nodes(aiohttp_client, settings: Settings, tmp_path: Path) -> AsyncIterator[tuple]:
    """Two in-process nodes on the same Redis (like two machines)."""
    node_a = await aiohttp_client(create_app(replace(settings, data_dir=tmp_path / "a")))
    node_b = await aiohttp_client(create_app(replace(settings, data_dir=tmp_path / "b")))
    yield node_a, node_b


async def create_show(node: TestClient) -> tuple[str, str]:
    resp = await node.post("/api/shows", json={"title": "revocation"}, headers=OPERATOR)
    assert resp.status == 201
    body = await resp.json()
    return body["show"]["id"], body["host_token"]


async def mint(node: TestClient, show_id: str, host_token: str, role: str = "viewer") -> tuple:
    resp = await node.post(
        f"/api/shows/{show_id}/tokens", json={"role": role}, headers=bearer(host_token)
    )
    assert resp.status == 201
    body = await resp.json()
    return body["token"], body["user_id"]


async def test_revocation_reaches_every_node_for_http_and_websocket(two_nodes) -> None:
    node_a, node_b = two_nodes
    show_id, host = await create_show(node_a)
    token, user_id = await mint(node_a, show_id, host)
    other, _ = await mint(node_a, show_id, host)
    ws = await node_b.ws_connect(f"/ws/{show_id}?token={token}", protocols=("liveshop.json",))
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"

    resp = await node_a.post(
        f"/api/shows/{show_id}/revoke", json={"user_id": user_id}, headers=bearer(host)
    )
    assert resp.status == 200
    revoked_at = (await resp.json())["revoked_at"]

    # Node B closes the open socket and refuses the token from then on.
    closed = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not closed:
        msg = await ws.receive(timeout=5)
        closed = ws.closed
    assert closed and ws.close_code == 4001
    assert await wait_until(
        lambda: node_b.app[REVOCATIONS].revoked.get((show_id, user_id)) == revoked_at, 5
    )
    for node in (node_a, node_b):
        resp = await node.get(f"/api/shows/{show_id}/orders", headers=bearer(token))
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "token_revoked"
        ws = await node.ws_connect(f"/ws/{show_id}?token={token}", protocols=("liveshop.json",))
        msg = await ws.receive_json(timeout=5)
        assert msg["code"] == "token_revoked"
        await ws.close()
    # Another user's token still works, and so does a token issued after the revocation.
    ws = await node_b.ws_connect(f"/ws/{show_id}?token={other}", protocols=("liveshop.json",))
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await ws.close()
    later = revoked_at + 1
    fresh = jwt.encode(
        {"sub": user_id, "name": "V", "role": "viewer", "show": show_id, "iat": later,
         "nbf": later, "exp": later + 600}, API_SECRET, algorithm="HS256",
        headers={"kid": API_ID},
    )  # fmt: skip
    ws = await node_b.ws_connect(f"/ws/{show_id}?token={fresh}", protocols=("liveshop.json",))
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await ws.close()
    del msg


async def test_a_new_node_loads_earlier_revocations(
    aiohttp_client, settings: Settings, tmp_path: Path, client, make_show
) -> None:
    show_id, host = await make_show()
    token, user_id = await mint(client, show_id, host)
    resp = await client.post(f"/api/shows/{show_id}/revoke", json={"user_id": user_id},
                             headers=OPERATOR)  # fmt: skip
    assert resp.status == 200
    late = await aiohttp_client(create_app(replace(settings, data_dir=tmp_path / "late")))
    resp = await late.get(f"/api/shows/{show_id}/orders", headers=bearer(token))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "token_revoked"


async def test_who_may_revoke(client, make_show) -> None:
    show_id, host = await make_show()
    viewer, viewer_id = await mint(client, show_id, host)
    moderator, _ = await mint(client, show_id, host, "moderator")
    url = f"/api/shows/{show_id}/revoke"
    resp = await client.post(url, json={"user_id": "x"}, headers=bearer(viewer))
    assert resp.status == 403
    resp = await client.post(url, json={"user_id": "x"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await client.post(url, json={"user_id": "host_" + show_id}, headers=bearer(moderator))
    assert resp.status == 403
    for bad in ({}, {"user_id": 5}, {"user_id": ""}, {"user_id": "a/b"}, {"user_id": "x" * 200}):
        resp = await client.post(url, json=bad, headers=bearer(moderator))
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_field"
    resp = await client.post(url, json={"user_id": viewer_id}, headers=bearer(moderator))
    assert resp.status == 200
    resp = await client.post(
        "/api/shows/no-such-show-x/revoke", json={"user_id": "x"}, headers=OPERATOR
    )
    assert resp.status == 404
    resp = await client.post(url, json={"user_id": "host_" + show_id}, headers=OPERATOR)
    assert resp.status == 200
    resp = await client.get(f"/api/shows/{show_id}/stats", headers=bearer(host))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "token_revoked"


async def _live_show(node: TestClient) -> tuple[str, str, Publisher]:
    show_id, host = await create_show(node)
    publisher = Publisher(base(node), show_id, host, PublishOptions(codec="vp8", **SMALL))
    await publisher.start()
    relay = node.app[RELAY]
    session_id = publisher.location.rsplit("/", 1)[1].partition("~")[0]  # type: ignore[union-attr]
    assert await wait_until(lambda: relay.sessions[session_id].connected.is_set(), 15)
    return show_id, host, publisher


def _whep_sessions(node: TestClient) -> list[str]:
    return [s.id for s in node.app[RELAY].sessions.values() if s.kind == "whep"]


async def test_ban_on_one_node_ends_media_on_another_and_refuses_whep(two_nodes) -> None:
    node_a, node_b = two_nodes
    show_id, host, publisher = await _live_show(node_b)  # media on node B only
    token, user_id = await mint(node_b, show_id, host)
    bystander_token, _ = await mint(node_b, show_id, host)
    viewer, bystander = LightViewer(), LightViewer()
    try:
        await viewer.join(base(node_b), show_id, token)
        await bystander.join(base(node_b), show_id, bystander_token)
        assert len(_whep_sessions(node_b)) == 2
        # The host bans over a WebSocket on node A; node B serves no WebSocket of this show.
        ws = await node_a.ws_connect(f"/ws/{show_id}?token={host}", protocols=("liveshop.json",))
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        await ws.send_json({"type": "mod.ban", "id": 1, "user_id": user_id})
        assert await wait_until(lambda: len(_whep_sessions(node_b)) == 1, 5)
        await ws.close()
        remaining = node_b.app[RELAY].sessions[_whep_sessions(node_b)[0]]
        assert remaining.viewer_id != user_id  # type: ignore[attr-defined]
        again = LightViewer()
        with pytest.raises(RuntimeError, match="WHEP 403.*banned"):
            await again.join(base(node_a), show_id, token)
        await again.pc.close()
    finally:
        await viewer.leave()
        await bystander.leave(bystander_token)
        await publisher.stop()


async def test_revocation_ends_media_sessions(two_nodes) -> None:
    node_a, node_b = two_nodes
    show_id, host, publisher = await _live_show(node_b)
    token, user_id = await mint(node_b, show_id, host)
    viewer = LightViewer()
    try:
        await viewer.join(base(node_b), show_id, token)
        assert len(_whep_sessions(node_b)) == 1
        resp = await node_a.post(
            f"/api/shows/{show_id}/revoke", json={"user_id": user_id}, headers=OPERATOR
        )
        assert resp.status == 200
        assert await wait_until(lambda: not _whep_sessions(node_b), 5)
    finally:
        await viewer.leave()
        await publisher.stop()


async def test_one_viewer_cannot_end_another_viewers_session(client, make_show) -> None:
    show_id, host, publisher = await _live_show(client)
    token_a, _ = await mint(client, show_id, host)
    token_b, _ = await mint(client, show_id, host)
    viewer = LightViewer()
    try:
        await viewer.join(base(client), show_id, token_a)
        path = viewer.location.removeprefix(base(client))  # type: ignore[union-attr]
        resp = await client.delete(path, headers=bearer(token_b))
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
        assert len(_whep_sessions(client)) == 1
        resp = await client.delete(path, headers=bearer(token_a))
        assert resp.status == 200
        assert await wait_until(lambda: not _whep_sessions(client), 5)
    finally:
        await viewer.leave()
        await publisher.stop()
        await asyncio.sleep(0)


async def test_ban_and_ownership_with_media_workers(server_proc) -> None:
    """Viewers on a worker process: DELETE needs the owner's token, a ban ends the session."""
    import aiohttp

    from tests.media.test_workers import SMALL as WORKER_SMALL
    from tests.media.test_workers import _viewers_per_worker

    server = server_proc("--media-workers", "1")
    async with aiohttp.ClientSession() as http:

        async def post(path: str, body: dict, token: str) -> dict:
            async with http.post(server.url + path, json=body, headers=bearer(token)) as resp:
                assert resp.status in (200, 201), await resp.text()
                return await resp.json()

        created = await post("/api/shows", {"title": "workers"}, API_KEY)
        show_id, host = created["show"]["id"], created["host_token"]
        publisher = Publisher(server.url, show_id, host, WORKER_SMALL)
        viewers = [LightViewer(), LightViewer()]
        try:
            await publisher.start()
            tokens = [(await post(f"/api/shows/{show_id}/tokens", {}, host)) for _ in viewers]
            for viewer, minted in zip(viewers, tokens, strict=True):
                await viewer.join(server.url, show_id, minted["token"])
                assert "/w0." in (viewer.location or "")  # served by the worker
            assert await wait_until(lambda: _viewers_per_worker(server.url).get("0") == 2, 15)
            async with http.delete(viewers[0].location, headers=bearer(tokens[1]["token"])) as resp:
                assert resp.status == 403
            async with http.ws_connect(
                f"{server.url}/ws/{show_id}?token={host}", protocols=("liveshop.json",)
            ) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "welcome"
                await ws.send_json({"type": "mod.ban", "id": 1, "user_id": tokens[0]["user_id"]})
                assert await wait_until(lambda: _viewers_per_worker(server.url).get("0") == 1, 10)
            async with http.delete(viewers[1].location, headers=bearer(tokens[1]["token"])) as resp:
                assert resp.status == 200
            assert await wait_until(lambda: _viewers_per_worker(server.url).get("0", 0) == 0, 10)
        finally:
            for viewer in viewers:
                await viewer.leave()
            await publisher.stop()


async def test_the_access_channel_survives_a_redis_restart(
    aiohttp_client, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis goes away and comes back (same data): the node's broker subscription says so and
    resubscribes, and a revocation made meanwhile on another node is in force here after the
    reload (the broker's repeated lines are throttled: test_log_throttle.py)."""
    from server.redis.embedded import EmbeddedRedis

    embedded = EmbeddedRedis(tmp_path / "own-redis")
    url = embedded.start()
    own = replace(settings, redis_url=url)
    node = await aiohttp_client(create_app(replace(own, data_dir=tmp_path / "n1")))
    show_id, host = await create_show(node)
    token, user_id = await mint(node, show_id, host)
    embedded.stop()
    caplog.set_level("WARNING", logger="liveshop.broker")
    assert await wait_until(lambda: "access: pub/sub read failed" in caplog.text, 10)
    url_again = embedded.start()
    assert url_again == url
    other = await aiohttp_client(create_app(replace(own, data_dir=tmp_path / "n2")))
    resp = await other.post(f"/api/shows/{show_id}/revoke", json={"user_id": user_id},
                            headers=OPERATOR)  # fmt: skip
    assert resp.status == 200
    assert await wait_until(lambda: (show_id, user_id) in node.app[REVOCATIONS].revoked, 15)
    resp = await node.get(f"/api/shows/{show_id}/orders", headers=bearer(token))
    assert (await resp.json())["error"]["code"] == "token_revoked"
    await other.close()
    await node.close()
    embedded.stop()


async def test_a_banned_user_gets_no_hls_playlist(client, make_show) -> None:
    show_id, host = await make_show()
    banned, banned_id = await mint(client, show_id, host)
    other, _ = await mint(client, show_id, host)
    ws = await client.ws_connect(f"/ws/{show_id}?token={host}", protocols=("liveshop.json",))
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await ws.send_json({"type": "mod.ban", "id": 1, "user_id": banned_id})
    while (reply := await ws.receive_json(timeout=5)).get("type") != "reply":
        pass
    await ws.close()
    resp = await client.get(f"/hls/{show_id}/index.m3u8", headers=bearer(banned))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "banned"
    resp = await client.get(f"/hls/{show_id}/index.m3u8", headers=bearer(other))
    assert (await resp.json())["error"]["code"] != "banned"  # not live here, but not refused
    assert reply["id"] == 1

"""Several nodes on one Redis (here on one machine): the origin directory, placement, takeover.

Real ``python -m server`` processes with distinct ``--node-id``s, a real aiortc publisher over
WHIP and decoding aiortc viewers over WHEP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import aiohttp
import redis

from loadtest.client import create_show
from media.aiortc_internals import configure_ice
from media.publish import Publisher
from server.redis import keys

from ..conftest import API_KEY, http_json
from .peers import ended_by_peer, wait_until
from .test_workers import SMALL, WhepViewer, _guest

SECRET = "origin-test-secret"


def _node(server_proc, redis_url: str, name: str, *extra: str):
    return server_proc("--redis-url", redis_url, "--secret", SECRET, "--node-id", name, *extra)


async def _post_whep(base: str, show_id: str, token: str) -> tuple[int, dict[str, str], str]:
    """A WHEP POST that does not follow redirects (the offer need not be answerable)."""
    viewer = WhepViewer()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{base}/whep/{show_id}",
                data=await viewer.offer(),
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
                allow_redirects=False,
            ) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.text()
    finally:
        await viewer.close()


async def _delete_code(base: str, path: str, token: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.delete(base + path, headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        return resp.status, (await resp.json())["error"]["code"]


def _node_viewers(redis_url: str, node: str) -> int:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        lines = [json.loads(v) for v in client.hgetall(keys.MEDIA_NODES).values()]
    finally:
        client.close()
    return sum(line["viewers"] for line in lines if line["node"] == node)


async def test_a_full_node_redirects_to_one_with_room_then_answers_503(
    server_proc, redis_url
) -> None:
    configure_ice(["127.0.0.1"])
    first = _node(server_proc, redis_url, "n1", "--media-node-max-viewers", "1")
    # The second node serves its viewers from a media worker: a node's workers are its edges.
    second = _node(
        server_proc, redis_url, "n2", "--media-node-max-viewers", "1", "--media-workers", "1"
    )
    async with aiohttp.ClientSession() as http:
        show_id, host_token = await create_show(http, first.url, "placement", API_KEY)
    publisher = Publisher(first.url, show_id, host_token, SMALL)
    viewers = [WhepViewer(), WhepViewer()]
    try:
        await publisher.start()
        await viewers[0].join_http(first.url, show_id, _guest(first.url, show_id))
        assert viewers[0].node.startswith("n1:")

        token = _guest(first.url, show_id)
        status, headers, body = await _post_whep(first.url, show_id, token)
        assert status == 307, body
        assert headers["Location"] == f"{second.url}/whep/{show_id}?token={token}"
        assert json.loads(body)["error"]["code"] == "node_full"

        # A WHEP client follows the 307 with its offer; the other node serves it as an edge.
        await viewers[1].join_http(first.url, show_id, _guest(first.url, show_id))
        assert viewers[1].node.startswith("n2:") and viewers[1].worker == "w0"
        assert await wait_until(lambda: all(len(v.frames) >= 10 for v in viewers), 20), [
            len(v.frames) for v in viewers
        ]

        # Both nodes full: 503 with Retry-After, and a code saying why.
        assert await wait_until(lambda: _node_viewers(redis_url, "n2") >= 1, 10)
        status, headers, body = await _post_whep(first.url, show_id, _guest(first.url, show_id))
        assert status == 503, body
        assert int(headers["Retry-After"]) > 0
        assert json.loads(body)["error"]["code"] == "cluster_full"
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.stop()


async def test_a_node_over_its_cpu_ceiling_redirects(server_proc, redis_url) -> None:
    configure_ice(["127.0.0.1"])
    # A ceiling no running process stays under: n1 is full as soon as it reports its CPU.
    first = _node(server_proc, redis_url, "n3", "--media-node-max-cpu", "0.000001")
    second = _node(server_proc, redis_url, "n4")
    async with aiohttp.ClientSession() as http:
        show_id, host_token = await create_show(http, first.url, "cpu ceiling", API_KEY)
    publisher = Publisher(first.url, show_id, host_token, SMALL)
    try:
        await publisher.start()

        async def redirected() -> bool:
            status, headers, _ = await _post_whep(first.url, show_id, _guest(first.url, show_id))
            return status == 307 and headers["Location"].startswith(f"{second.url}/whep/")

        deadline = asyncio.get_running_loop().time() + 10
        while not await redirected():  # its first CPU report comes within one heartbeat
            assert asyncio.get_running_loop().time() < deadline, "never redirected"
            await asyncio.sleep(0.2)
    finally:
        await publisher.stop()


async def test_a_publisher_on_another_node_needs_replace_and_takes_over(
    server_proc, redis_url
) -> None:
    configure_ice(["127.0.0.1"])
    first = _node(server_proc, redis_url, "n1")
    second = _node(server_proc, redis_url, "n2")
    third = _node(server_proc, redis_url, "n5")
    async with aiohttp.ClientSession() as http:
        show_id, host_token = await create_show(http, first.url, "takeover", API_KEY)
    original = Publisher(first.url, show_id, host_token, SMALL)
    rival = Publisher(second.url, show_id, host_token, SMALL)
    taker = Publisher(second.url, show_id, host_token, SMALL)
    viewer, bystander = WhepViewer(), WhepViewer()
    try:
        await original.start()
        await viewer.join_http(second.url, show_id, _guest(second.url, show_id))
        assert viewer.node.startswith("n2:")  # an edge of n1's origin
        await bystander.join_http(third.url, show_id, _guest(third.url, show_id))
        assert bystander.node.startswith("n5:")  # another edge of n1's origin
        assert await wait_until(
            lambda: len(viewer.frames) >= 10 and len(bystander.frames) >= 10, 20
        )

        # A DELETE naming no process, or one that is gone, is a clear 404.
        token = _guest(first.url, show_id)
        assert await _delete_code(first.url, f"/whep/{show_id}/abc", token) == (404, "no_session")
        assert await _delete_code(first.url, f"/whep/{show_id}/abc~0dead0", token) == (
            404,
            "no_process",
        )

        try:
            await rival.start()
            raise AssertionError("a second publisher on another node was accepted")
        except RuntimeError as exc:
            assert "409" in str(exc) and "already_live" in str(exc)

        # ?replace=1 on n2: n2 becomes the origin, n1's publisher is ended, n2's viewer moves
        # onto the new publisher in place, n5's edge follows the show to n2 (re-homed: its
        # viewer is not ended), and the show stays live throughout.
        await taker.start(replace=True)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            entry = client.hgetall(keys.media_origin(show_id))
        finally:
            client.close()
        assert entry["node"] == "n2", entry
        assert await wait_until(lambda: ended_by_peer(original.pc), 15)
        frames = len(viewer.frames), len(bystander.frames)
        assert await wait_until(
            lambda: (
                len(viewer.frames) >= frames[0] + 30 and len(bystander.frames) >= frames[1] + 30
            ),
            15,
        )
        assert bystander.pc.connectionState == "connected"
        assert http_json(f"{first.url}/api/shows/{show_id}")[1]["show"]["status"] == "live"

        # The end, at the new origin: its entry is removed from the directory at once.
        await taker.stop()
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            assert await wait_until(lambda: not client.exists(keys.media_origin(show_id)), 5)
        finally:
            client.close()
    finally:
        await viewer.close()
        await bystander.close()
        await original.stop()
        await rival.stop()
        await taker.stop()


async def test_ll_hls_on_a_node_without_the_publisher_comes_from_an_edge_packager(
    server_proc, redis_url
) -> None:
    configure_ice(["127.0.0.1"])
    first = _node(server_proc, redis_url, "hls1")
    second = _node(server_proc, redis_url, "hls2")
    async with aiohttp.ClientSession() as http:
        show_id, host_token = await create_show(http, first.url, "hls on an edge", API_KEY)
    publisher = Publisher(
        first.url, show_id, host_token, dataclasses.replace(SMALL, codec="h264", keyint_s=1.0)
    )
    try:
        await publisher.start()
        token = _guest(second.url, show_id)
        async with aiohttp.ClientSession() as http:
            url = f"{second.url}/hls/{show_id}/index.m3u8?token={token}"
            async with http.get(url) as resp:
                assert resp.status == 200, await resp.text()
                media = next(
                    line for line in (await resp.text()).splitlines() if line.endswith(".m3u8")
                )
            async with http.get(f"{second.url}/hls/{show_id}/{media}") as resp:
                assert resp.status == 200, await resp.text()
                playlist = await resp.text()
        # the second node has no publisher: its edge (piped from the first) packages the show
        assert "#EXT-X-PART:" in playlist and "#EXT-X-MAP:" in playlist
    finally:
        await publisher.stop()

"""Two ``--reuse-port`` processes on one port and one Redis: any of them serves any viewer.

The publisher lands on one process (the origin); viewers that land on the other are served
by an edge there, fed by a pipe from the origin through the origin directory in Redis.
"""

from __future__ import annotations

import functools
import json
import secrets
from pathlib import Path

import aiohttp
import redis

from loadtest.client import create_show
from media.aiortc_internals import configure_ice
from media.publish import Publisher
from server.redis import keys

from ..conftest import API_KEY, free_port, http_json
from .peers import ended_by_peer, wait_until
from .test_workers import SMALL, WhepViewer, _delete, _guest


def _has_bytes(files: list[Path]) -> bool:
    return any(f.is_file() and f.stat().st_size > 0 for f in files)


async def test_ten_viewers_through_a_shared_port_all_get_frames(server_proc, redis_url) -> None:
    configure_ice(["127.0.0.1"])
    port = free_port()
    common = ("--reuse-port", "--redis-url", redis_url, "--secret", "reuse-port-secret")
    node = f"box-{secrets.token_hex(3)}"
    first = server_proc(*common, "--node-id", node, port=port)
    second = server_proc(*common, "--node-id", node, port=port)
    base = first.url
    # A health check on the shared port may be answered by either process: wait until both
    # are in the node registry, so both accept connections.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await wait_until(
            lambda: (
                sum(
                    json.loads(line)["node"] == node
                    for line in client.hgetall(keys.MEDIA_NODES).values()
                )
                >= 2
            ),
            30,
        )
    finally:
        client.close()
    async with aiohttp.ClientSession() as http:
        show_id, host_token = await create_show(http, base, "reuse port", API_KEY)
    publisher = Publisher(base, show_id, host_token, SMALL)
    viewers = [WhepViewer() for _ in range(10)]
    try:
        await publisher.start()
        assert await wait_until(lambda: publisher.pc.connectionState == "connected", 20)
        tokens = {}  # a viewer's own token: only it may DELETE the session
        for viewer in viewers:
            tokens[viewer] = _guest(base, show_id)
            await viewer.join_http(base, show_id, tokens[viewer])
        assert await wait_until(lambda: all(len(v.frames) >= 10 for v in viewers), 40), [
            (len(v.frames), v.node, v.pc.connectionState) for v in viewers
        ]
        assert all(set(v.frames) == {(320, 240)} for v in viewers)
        # The kernel spread the connections: both processes served viewers (one as an edge).
        assert len({v.node for v in viewers}) == 2, {v.node for v in viewers}

        # Recording runs at the origin whichever process the request reaches.
        url = f"{base}/api/shows/{show_id}/recordings"
        for _ in range(3):
            status, body = http_json(url, "POST", {}, host_token)
            assert status == 201, body
            # A recording starts at the next keyframe (requested by PLI) and reaches the disk a
            # cluster at a time: its header is there once that keyframe is.
            name = body["recording"]["name"]
            files = [p.data_dir / "recordings" / show_id / name for p in (first, second)]
            assert await wait_until(functools.partial(_has_bytes, files), 10)
            status, body = http_json(url + "/stop", "POST", {}, host_token)
            assert status == 200 and body["recording"]["bytes"] > 0, body

        # DELETE reaches whichever process holds the viewer (passed on through Redis).
        leaving, viewers = viewers[:5], viewers[5:]
        for viewer in leaving:
            assert await _delete(base, viewer.location, _guest(base, show_id)) == 403
            assert await _delete(base, viewer.location, tokens[viewer]) == 200
        assert await wait_until(lambda: all(ended_by_peer(v.pc) for v in leaving), 10)
        for viewer in leaving:
            await viewer.close()
            assert await _delete(base, viewer.location, tokens[viewer]) == 404

        # The broadcast ends: viewers on the origin and on the edge are all ended.
        await publisher.stop()
        assert await wait_until(lambda: all(ended_by_peer(v.pc) for v in viewers), 15)
        assert http_json(f"{base}/api/shows/{show_id}")[1]["show"]["status"] == "ended"
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.stop()

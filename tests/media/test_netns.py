"""Origin → edge across real separate hosts: network namespaces joined by veth pairs.

Each node (``python -m server``) runs in a network namespace of its own with its own address
(``loadtest.netns``); this test process (publisher and viewers) is one more host on the
bridge, and one TCP Redis is reachable from all. Names, addresses and ports are unique per
run; everything is torn down in the finalizer.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from loadtest.client import create_show
from loadtest.netns import API_KEY, Lab, Node, make_lab
from media.aiortc_internals import configure_ice
from media.pipe import pipe_key, seal
from media.publish import Publisher, PublishOptions
from server.redis import keys

from ..conftest import http_json
from .peers import ended_by_peer, wait_until
from .test_workers import WhepViewer, _guest


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(tmp_path, "ABC")
    try:
        configure_ice([lab.host_address])
        yield lab
    finally:
        lab.teardown()
        configure_ice(["127.0.0.1"])  # process wide: later tests must not gather on our bridge


async def _watch(node: Node, show_id: str) -> WhepViewer:
    viewer = WhepViewer()
    await viewer.join_http(node.url, show_id, _guest(node.url, show_id))
    assert viewer.node.startswith(f"{node.name}:"), viewer.node  # served by that node itself
    return viewer


def _origin(lab: Lab, show_id: str) -> dict[str, str]:
    client = redis.Redis.from_url(lab.redis_url, decode_responses=True)
    try:
        return client.hgetall(keys.media_origin(show_id))
    finally:
        client.close()


async def test_edges_on_other_hosts_serve_join_instantly_and_survive_each_other(lab: Lab) -> None:
    a, b, c = lab.start_nodes(["A", "B", "C"])
    async with aiohttp.ClientSession() as http:
        show_id, host_token = await create_show(http, a.url, "netns vp8", API_KEY)
    # keyint 10 s: no keyframe of its own during the test, so joins must use the GOP cache.
    options = PublishOptions(
        codec="vp8", width=320, height=240, fps=30, bitrate=400_000, keyint_s=10.0
    )
    publisher = Publisher(a.url, show_id, host_token, options)
    viewers: list[WhepViewer] = []
    try:
        await publisher.start()
        origin = _origin(lab, show_id)
        assert origin["node"] == "A" and origin["pipe"].startswith(f"{a.address}:"), origin

        on_a, on_b, on_c = [await _watch(node, show_id) for node in (a, b, c)]
        viewers += [on_a, on_b, on_c]
        assert await wait_until(lambda: all(len(v.frames) >= 10 for v in viewers), 20), [
            len(v.frames) for v in viewers
        ]
        assert all(set(v.frames) == {(320, 240)} for v in viewers)

        # A late joiner on an edge starts from the edge's GOP cache: no new keyframe asked for.
        assert publisher.video is not None
        forced = publisher.video.keyframes_forced
        late = await _watch(b, show_id)
        viewers.append(late)
        assert await wait_until(lambda: len(late.frames) >= 10, 10)
        assert publisher.video.keyframes_forced == forced
        assert b.metric("liveshop_media_edges")[""] == 1
        assert a.metric("liveshop_media_pipes")['direction="out"'] == 2
        assert a.metric("liveshop_media_edges")[""] == 0  # A is the origin, not an edge

        # A forged join and a forged RTP datagram at the origin's pipe address: both dropped.
        host, port = origin["pipe"].rsplit(":", 1)
        forged_join = json.dumps({"type": "join", "show": show_id, "epoch": origin["epoch"]})
        wrong_key = pipe_key("not-the-secret", show_id, origin["epoch"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            attacker.bind((lab.host_address, 0))
            attacker.sendto(seal(wrong_key, forged_join.encode()), (host, int(port)))
            attacker.sendto(seal(wrong_key, b"\x80\x60" + bytes(30)), (host, int(port)))
        assert await wait_until(
            lambda: a.metric("liveshop_media_pipe_dropped_total").get('reason="auth"', 0) >= 1, 5
        )
        assert a.metric("liveshop_media_pipes")['direction="out"'] == 2  # no pipe for it

        # Node B dies: A's and C's viewers carry on; A drops the pipe to B by itself.
        b.kill()
        frames = [len(on_a.frames), len(on_c.frames)]
        assert await wait_until(
            lambda: len(on_a.frames) >= frames[0] + 30 and len(on_c.frames) >= frames[1] + 30, 15
        )
        assert await wait_until(
            lambda: a.metric("liveshop_media_pipes")['direction="out"'] == 1, 10
        )
        assert on_a.pc.connectionState == on_c.pc.connectionState == "connected"

        # Node A dies: C's edge hears nothing, ends, and its viewer's connection is closed.
        a.kill()
        assert await wait_until(lambda: ended_by_peer(on_c.pc), 15)
        assert await wait_until(lambda: c.metric("liveshop_media_edges")[""] == 0, 5)
        assert http_json(c.url + "/healthz")[0] == 200
        # Its directory entry was never removed, but its lease runs out.
        assert await wait_until(lambda: not _origin(lab, show_id), 10)
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.stop()


async def test_h264_on_two_edges_and_the_origin_dying_ends_both(lab: Lab) -> None:
    a, b, c = lab.start_nodes(["A", "B", "C"])
    async with aiohttp.ClientSession() as http:
        show_id, host_token = await create_show(http, a.url, "netns h264", API_KEY)
    options = PublishOptions(codec="h264", width=320, height=240, fps=30, bitrate=400_000)
    publisher = Publisher(a.url, show_id, host_token, options)
    viewers: list[WhepViewer] = []
    try:
        await publisher.start()
        viewers += [await _watch(b, show_id), await _watch(c, show_id)]
        assert await wait_until(lambda: all(len(v.frames) >= 10 for v in viewers), 20), [
            len(v.frames) for v in viewers
        ]
        assert all(set(v.frames) == {(320, 240)} for v in viewers)

        a.kill()
        assert await wait_until(lambda: all(ended_by_peer(v.pc) for v in viewers), 15), [
            v.pc.connectionState for v in viewers
        ]
        assert await wait_until(
            lambda: all(node.metric("liveshop_media_edges")[""] == 0 for node in (b, c)), 5
        )
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.stop()

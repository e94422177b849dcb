"""Co-host across nodes (issue 20): the host publishes on one node, the co-host on another; viewers
anywhere play both streams through the origin directory's edges (and a media worker), and the
host removes the co-host from the host's node."""

from __future__ import annotations

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection

from media.aiortc_internals import configure_ice
from media.publish import Publisher, PublishOptions

from ..conftest import create_show_http, http_json
from .peers import SMALL, ended_by_peer, wait_until
from .test_workers import WhepViewer, _guest

SECRET = "cohost-nodes-secret"
COHOST_SIZE = dict(width=256, height=192, fps=30, bitrate=300_000)


async def _whip_status(base: str, show_id: str, token: str, sdp: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/whip/{show_id}",
            data=sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        return resp.status, (await resp.json())["error"]["code"]


async def test_cohost_on_another_node_is_played_everywhere_and_removed_from_the_host_node(
    server_proc, redis_url
) -> None:
    configure_ice(["127.0.0.1"])
    common = ("--redis-url", redis_url, "--secret", SECRET)
    node_a = server_proc(*common, "--node-id", "cohost-a")
    node_b = server_proc(*common, "--node-id", "cohost-b", "--media-workers", "1")
    show_id, host_token = create_show_http(node_a.url, "Across nodes")
    status, invite = http_json(
        f"{node_a.url}/api/shows/{show_id}/cohost/invite", "POST", {"name": "Rep"}, host_token
    )
    assert status == 201, invite
    status, other = http_json(
        f"{node_a.url}/api/shows/{show_id}/cohost/invite", "POST", {}, host_token
    )
    host = Publisher(node_a.url, show_id, host_token, PublishOptions(codec="vp8", **SMALL))
    cohost = Publisher(
        node_b.url, show_id, invite["token"], PublishOptions(codec="vp8", **COHOST_SIZE)
    )
    viewers: list[WhepViewer] = []
    try:
        await host.start()
        await cohost.start()  # the co-host's WHIP lands on the other node: its origin is there
        # node A plays the co-host through an edge from B; node B (its worker) the host's from A
        token = _guest(node_a.url, show_id)
        for base, stream in ((node_a.url, "cohost"), (node_b.url, ""), (node_b.url, "cohost")):
            viewer = WhepViewer()
            viewers.append(viewer)
            await viewer.join_http(base, f"{show_id}/{stream}" if stream else show_id, token)
        a_cohost, b_host, b_cohost = viewers
        assert b_host.worker == "w0" and b_cohost.worker == "w0"  # B's media worker serves both
        assert b_cohost.location.startswith(f"/whep/{show_id}/cohost/")
        for viewer in viewers:
            await viewer.wait_frames(8, within=20)
        assert a_cohost.frames[-1] == (256, 192) and b_cohost.frames[-1] == (256, 192)
        assert b_host.frames[-1] == (320, 240)

        # one co-host at a time, whichever node the second one tries
        sdp = await _offer()
        assert await _whip_status(node_a.url, show_id, other["token"], sdp) == (409, "cohost_live")

        # removal on A ends the stream held by B, and everyone's co-host playback with it
        status, removed = http_json(
            f"{node_a.url}/api/shows/{show_id}/cohost/remove", "POST", {}, host_token
        )
        assert status == 200 and removed["was_live"] is True, removed
        assert await wait_until(
            lambda: ended_by_peer(a_cohost.pc) and ended_by_peer(b_cohost.pc),
            15,
        )
        status, body = http_json(f"{node_b.url}/api/shows/{show_id}")
        assert body["show"]["status"] == "live" and body["show"]["cohost"] is None
        before = len(b_host.frames)
        await b_host.wait_frames(before + 10)  # the host's stream goes on
        assert len(b_host.frames) >= before + 10
    finally:
        for viewer in viewers:
            await viewer.close()
        await cohost.stop()
        await host.stop()


async def _offer() -> str:
    """An answerable WHIP offer (never connected)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp

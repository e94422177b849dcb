"""ICE configuration: configured host addresses (127.0.0.1 included), announced address, port range, servers."""

from __future__ import annotations

import re

from aiortc import RTCConfiguration, RTCPeerConnection

from media.aiortc_internals import configure_ice
from media.ice import IceConfig


async def _candidates() -> list[tuple[str, int]]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    found = re.findall(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", pc.localDescription.sdp)
    await pc.close()
    return [(host, int(port)) for host, port in found]


async def test_loopback_announced_address_and_port_range() -> None:
    try:
        IceConfig(addresses=["127.0.0.1"]).apply()
        assert [host for host, _ in await _candidates()] == [
            "127.0.0.1"
        ]  # aioice alone skips loopback

        IceConfig(
            addresses=["127.0.0.1"], announced_address="203.0.113.7", port_min=41000, port_max=41020
        ).apply()
        candidates = await _candidates()
        assert len(candidates) == 1
        host, port = candidates[0]
        assert host == "203.0.113.7" and 41000 <= port <= 41020
    finally:
        configure_ice(["127.0.0.1"])


def test_ice_servers_handed_to_clients() -> None:
    assert IceConfig().rtc_configuration().iceServers == []  # no public STUN by default
    config = IceConfig(
        servers=["stun:stun.example.org:3478", "turn:alice:s3cret@turn.example.org:3478"]
    )
    servers = config.ice_servers()
    assert servers[0].urls == "stun:stun.example.org:3478"
    assert servers[1].urls == "turn:turn.example.org:3478"
    assert (servers[1].username, servers[1].credential) == ("alice", "s3cret")
    links = config.link_headers()
    assert links[0] == '<stun:stun.example.org:3478>; rel="ice-server"'
    assert 'username="alice"' in links[1]


def test_ice_server_link_keeps_the_query() -> None:
    """``?transport=tcp`` (RFC 7065 §3.1) survives into the RTCIceServer and the Link header."""
    config = IceConfig(
        servers=[
            "turn:alice:s3cret@turn.example.org:3478?transport=tcp",
            "turn:t.example:3478?transport=udp",
        ]
    )
    servers = config.ice_servers()
    assert servers[0].urls == "turn:turn.example.org:3478?transport=tcp"
    assert servers[1].urls == "turn:t.example:3478?transport=udp"
    links = config.link_headers()
    assert links[0] == (
        '<turn:turn.example.org:3478?transport=tcp>; rel="ice-server"; username="alice"; '
        'credential="s3cret"; credential-type="password"'
    )
    assert links[1] == '<turn:t.example:3478?transport=udp>; rel="ice-server"'

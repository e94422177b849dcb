"""ICE configuration: configured host addresses (127.0.0.1 included), announced address, port range, servers."""

from __future__ import annotations

import asyncio
import re
import socket

from aioice import stun
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from media.aiortc_internals import configure_ice, ice_sockets
from media.ice import IceConfig

MAPPED = "198.51.100.9"  # what our test STUN server says the NAT maps to (TEST-NET-2)


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


class StunResponder(asyncio.DatagramProtocol):
    """A tiny STUN server (RFC 8489 Binding): answers with a made-up public mapping."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.asked: list[tuple[str, int]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = stun.parse_message(data)
        if request.message_method != stun.Method.BINDING:
            return
        self.asked.append(addr)
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = (MAPPED, addr[1])
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)


async def test_port_range_still_gathers_srflx_and_bumps_the_receive_buffer() -> None:
    loop = asyncio.get_running_loop()
    transport, responder = await loop.create_datagram_endpoint(
        StunResponder, local_addr=("127.0.0.1", 0)
    )
    stun_port = transport.get_extra_info("sockname")[1]
    fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    default_rcvbuf = fresh.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    fresh.close()
    try:
        for announced in ("", "203.0.113.7"):
            IceConfig(
                addresses=["127.0.0.1"], announced_address=announced, port_min=42000, port_max=42050
            ).apply()
            pc = RTCPeerConnection(
                RTCConfiguration(iceServers=[RTCIceServer(f"stun:127.0.0.1:{stun_port}")])
            )
            try:
                pc.addTransceiver("video", direction="recvonly")
                await pc.setLocalDescription(await pc.createOffer())
                sdp = pc.localDescription.sdp
                host = re.findall(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", sdp)
                srflx = re.findall(
                    r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ srflx raddr (\S+) rport (\d+)", sdp
                )
                assert len(host) == 1 and 42000 <= int(host[0][1]) <= 42050
                assert host[0][0] == (announced or "127.0.0.1")
                # the STUN query went out of the ranged host socket itself
                assert srflx == [(MAPPED, host[0][1], host[0][0], host[0][1])], sdp
                assert responder.asked[-1] == ("127.0.0.1", int(host[0][1]))
                sockets = ice_sockets(pc)
                assert sockets
                for sock in sockets:
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) > default_rcvbuf
            finally:
                await pc.close()
    finally:
        transport.close()
        configure_ice(["127.0.0.1"])

"""``close_peer``: a peer connection close that gets stuck still tells the other side.

aiortc stops the DTLS and ICE transports (close_notify, sockets) only after every sender and
receiver has stopped; one that never does would leave the remote peer waiting ~30 s for ICE
consent to expire. Real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from media import session
from media.aiortc_internals import configure_ice, nominated_protocol
from media.session import close_peer

from .peers import ended_by_peer, wait_until


async def _connected_pair() -> tuple[RTCPeerConnection, RTCPeerConnection]:
    configure_ice(["127.0.0.1"])
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver("audio", direction="sendonly")
    await client.setLocalDescription(await client.createOffer())
    await server.setRemoteDescription(client.localDescription)
    await server.setLocalDescription(await server.createAnswer())
    await client.setRemoteDescription(server.localDescription)
    assert await wait_until(
        lambda: client.connectionState == server.connectionState == "connected", 15
    )
    return client, server


def _decoders() -> int:
    return sum(t.name == "audio-decoder" and t.is_alive() for t in threading.enumerate())


async def test_a_close_completes_and_the_peer_sees_it() -> None:
    client, server = await _connected_pair()
    try:
        await close_peer(server, "server")
        assert server.connectionState == "closed"
        assert await wait_until(lambda: ended_by_peer(client), 5)
    finally:
        await client.close()


async def test_a_stuck_close_is_logged_and_still_sends_close_notify(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, server = await _connected_pair()
    never = asyncio.get_running_loop().create_future()

    async def stuck() -> None:
        await never

    (transceiver,) = server.getTransceivers()
    monkeypatch.setattr(transceiver.receiver, "stop", stuck)
    monkeypatch.setattr(session, "CLOSE_TIMEOUT_S", 0.3)
    decoders = _decoders()
    try:
        with caplog.at_level(logging.WARNING, logger="liveshop.media.session"):
            await close_peer(server, "whep test")
        assert "whep test: peer connection close timed out in:" in caplog.text
        assert "stuck" in caplog.text  # where it waited
        assert transceiver.receiver.transport.state == "closed"
        assert _decoders() == decoders - 1  # the stuck receiver's thread is ended too
        # the client learns at once from the close_notify, not after consent expiry (~30 s)
        assert await wait_until(lambda: ended_by_peer(client), 5)
    finally:
        await client.close()


async def test_a_lost_close_notify_is_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A viewer's full receive buffer drops the first copy; the second one ends it."""
    client, server = await _connected_pair()
    (transceiver,) = client.getTransceivers()
    protocol, _ = nominated_protocol(transceiver.receiver.transport)
    dropped: list[bytes] = []
    deliver = protocol.datagram_received

    def lossy(data: bytes, addr: object) -> None:
        if 19 < data[0] < 64 and not dropped:  # the first DTLS record from now on (RFC 7983)
            dropped.append(data)
            return
        deliver(data, addr)

    monkeypatch.setattr(protocol, "datagram_received", lossy)
    try:
        await close_peer(server, "server")
        assert await wait_until(lambda: ended_by_peer(client), 5)
        assert len(dropped) == 1 and dropped[0][0] == 21  # it was the alert (content type 21)
    finally:
        await client.close()

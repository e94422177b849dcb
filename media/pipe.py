"""Pipe: a show's RTP from the process that receives it (origin) to others (edges).

Like mediasoup's ``pipeToRouter``: the origin forwards the producer's packets unchanged
(original SSRC, sequence numbers, timestamps; RTX already unwrapped) over plain UDP, for
loopback or a private network between the relay's own processes — no SRTP. The edge
feeds them to producers of its own, so its viewers get the same GOP cache, NACK history
and PLI throttling; PLI and sender reports travel as small JSON control datagrams
(first byte ``{``, never a valid RTP version-2 first byte).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import time
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from .producer import Producer

log = logging.getLogger("liveshop.media.pipe")

_HDR = struct.Struct("!BBHII")
SR_EVERY_S = 1.0
# The GOP priming is sent in one burst: the edge's socket must hold a whole GOP (a 2 s GOP
# of 720p at 1.5 Mbps is ≈ 400 kB; the kernel default is 208 kB). Capped by net.core.rmem_max.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def _udp_socket(host: str, buffer_option: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, buffer_option, SOCKET_BUFFER_BYTES)
    except OSError:
        pass  # the kernel default still works, with a less reliable instant join at the edge
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)


class _PipeTrack:
    """A :class:`~media.sink.Sink` on an origin producer: writes each packet once to the edge."""

    def __init__(self, origin: PipeOrigin, producer: Producer) -> None:
        self.origin = origin
        self.producer = producer
        self.kind = producer.kind
        self.packets = 0

    def forward(self, p: RtpPacket) -> None:
        self.origin._send(
            _HDR.pack(
                0x80, (p.marker << 7) | p.payload_type, p.sequence_number, p.timestamp, p.ssrc
            )
            + p.payload
        )
        self.packets += 1

    def producer_closed(self) -> None:
        """The origin's router re-attaches the pipe to a replacement (``PipeOrigin.attach``)."""


class PipeOrigin:
    """The origin end: attached to a show's producers, sending to one edge address."""

    def __init__(self, show_id: str, producers: dict[str, Producer], edge: tuple[str, int]) -> None:
        self.show_id = show_id
        self.producers = producers
        self.edge = edge
        self.endpoint = _Endpoint(self._on_control)
        self.tracks: list[_PipeTrack] = []
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        local = "127.0.0.1" if self.edge[0] in ("127.0.0.1", "localhost") else "0.0.0.0"
        await loop.create_datagram_endpoint(
            lambda: self.endpoint, sock=_udp_socket(local, socket.SO_SNDBUF)
        )
        self.attach(self.producers)
        self._task = asyncio.ensure_future(self._sender_reports())

    def attach(self, producers: dict[str, Producer]) -> None:
        """Pipe these producers from now on: at start, and when a publisher is replaced."""
        for track in self.tracks:
            track.producer.remove_sink(track)
        self.producers = producers
        self.tracks = []
        self._control(
            {
                "type": "hello",
                "show": self.show_id,
                "tracks": [_describe(p) for p in producers.values()],
            }
        )
        for producer in producers.values():
            track = _PipeTrack(self, producer)
            self.tracks.append(track)
            if producer.gop is not None:
                for p in producer.gop.snapshot():  # the edge starts with a keyframe cached
                    track.forward(p)
            producer.add_sink(track)

    def _send(self, data: bytes) -> None:
        if self.endpoint.transport is not None:
            self.endpoint.transport.sendto(data, self.edge)

    def _control(self, message: dict[str, Any]) -> None:
        self._send(json.dumps(message).encode())

    def _on_control(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.startswith(b"{"):
            return
        try:
            message = json.loads(data)
        except ValueError:
            return
        if message.get("type") == "pli":
            producer = self.producers.get("video")
            if producer is not None:
                producer.request_keyframe()  # throttled at the origin too

    async def _sender_reports(self) -> None:
        while not self.closed:
            await asyncio.sleep(SR_EVERY_S)
            for kind, producer in self.producers.items():
                if producer.sr is not None:
                    ntp, rtp, wall = producer.sr
                    self._control(
                        {
                            "type": "sr",
                            "kind": kind,
                            "ntp": ntp,
                            "rtp": rtp,
                            "age": time.time() - wall,
                        }
                    )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        self._control({"type": "bye"})
        for track in self.tracks:
            track.producer.remove_sink(track)
        if self.endpoint.transport is not None:
            self.endpoint.transport.close()


class PipeEdge:
    """The edge end: producers fed from an origin's datagrams."""

    kind = "pipe"

    def __init__(
        self, show_id: str, on_ready: Any, on_bye: Any, gop_max_packets: int = 6000
    ) -> None:
        self.id = f"pipe-{show_id}"
        self.show_id = show_id
        self.endpoint = _Endpoint(self._on_datagram)
        self.producers: dict[str, Producer] = {}
        self.by_ssrc: dict[int, Producer] = {}
        self.by_pt: dict[int, Producer] = {}
        self.origin: tuple[str, int] | None = None
        self.ready = asyncio.Event()
        self.ended = False
        self._ending: asyncio.Future[None] | None = None
        self._on_ready = on_ready
        self._on_bye = on_bye
        self._gop_max_packets = gop_max_packets

    async def bind(self, host: str = "127.0.0.1") -> int:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: self.endpoint, sock=_udp_socket(host, socket.SO_RCVBUF)
        )
        assert self.endpoint.transport is not None
        return int(self.endpoint.transport.get_extra_info("sockname")[1])

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr != self.origin and self.origin is not None:
            return  # once the hello came, only the origin's socket feeds this edge
        if data[:1] == b"{":
            self._on_control(data, addr)
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return
        producer = self.by_ssrc.get(packet.ssrc)
        if producer is None:
            producer = self.by_pt.get(packet.payload_type)
            if producer is None:
                return
            self.by_ssrc[packet.ssrc] = producer
        producer._on_rtp(packet)

    def _on_control(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        kind = message.get("type")
        if kind == "hello" and not self.ended:
            self._on_hello(message, addr)
        elif kind == "sr":
            target = self.producers.get(message.get("kind", ""))
            if target is not None:
                target.sr = (
                    int(message["ntp"]),
                    int(message["rtp"]),
                    time.time() - float(message.get("age", 0)),
                )
        elif kind == "bye":
            asyncio.ensure_future(self.end())

    def _on_hello(self, message: dict[str, Any], addr: tuple[str, int]) -> None:
        """The first hello, or a replacement publisher's: new producers, viewers move over."""
        self.origin = addr
        producers: dict[str, Producer] = {}
        by_pt: dict[int, Producer] = {}
        for track in message["tracks"]:
            codec = RTCRtpCodecParameters(
                mimeType=track["mime"],
                clockRate=track["clock"],
                channels=track.get("channels"),
                payloadType=track["pt"],
                parameters=track.get("params", {}),
            )
            producer = Producer(
                self.show_id,
                track["kind"],
                codec,
                None,
                self._gop_max_packets,
                upstream_keyframe=self._ask_keyframe,
            )
            producers[track["kind"]] = producer
            if codec.payloadType is not None:
                by_pt[codec.payloadType] = producer
        self.producers, self.by_pt, self.by_ssrc = producers, by_pt, {}
        self.ready.set()
        self._on_ready(self)

    def _ask_keyframe(self) -> None:
        if self.origin is not None and self.endpoint.transport is not None:
            self.endpoint.transport.sendto(b'{"type": "pli"}', self.origin)

    async def end(self) -> None:
        """Close the producers and the socket, then the owner's ``on_bye``; every caller waits."""
        if self._ending is None:
            self.ended = True
            for producer in self.producers.values():
                producer.close()
            if self.endpoint.transport is not None:
                self.endpoint.transport.close()
            self._ending = asyncio.ensure_future(self._on_bye(self))
        await asyncio.shield(self._ending)


def _describe(producer: Producer) -> dict[str, Any]:
    codec = producer.codec
    return {
        "kind": producer.kind,
        "mime": codec.mimeType,
        "clock": codec.clockRate,
        "channels": codec.channels,
        "pt": codec.payloadType,
        "params": {k: v for k, v in codec.parameters.items()},
    }

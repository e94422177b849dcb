"""Pipe: a show's RTP from the process that receives it (origin) to others (edges).

Like mediasoup's ``pipeToRouter``: the origin forwards the producer's packets unchanged
(original SSRC, sequence numbers, timestamps; RTX already unwrapped) over UDP. The edge feeds
them to producers of its own, so its viewers get the same GOP cache, NACK history and PLI
throttling; PLI, sender reports and liveness travel as small JSON control datagrams (first
byte ``{``, never a valid RTP version-2 first byte).

Pipes may cross a network, so every datagram, both ways, ends in a 16-byte keyed BLAKE2b tag
(:func:`seal`) under a per-pipe key derived from the server secret, the show and the
publisher's epoch (:func:`pipe_key`): the key itself never travels; both ends derive it
(the epoch comes from the origin directory in Redis). A datagram whose tag fails is dropped
and counted (``liveshop_media_pipe_dropped_total``). The payload is not encrypted: it is the
same RTP the viewers receive (SRTP-protected on their leg), on an operator's own network.

Two ways to open a pipe:

- a node's edge asks the origin process: it sends ``join`` from its own socket to the
  origin's pipe address (:class:`PipeServer`) about once a second; the origin pipes to that
  socket while the joins keep coming and stops ``JOIN_TIMEOUT_S`` after the last one;
- ``--media-workers``: the main process pipes to a worker's socket (``Relay.pipe_to``).

Either way the origin sends ``alive`` (and sender reports) every second, and an edge that
hears nothing authentic for ``EDGE_TIMEOUT_S`` ends itself and its viewers (the origin died
or the network broke): viewers see their connection close, not a frozen picture.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from . import metrics
from .producer import Producer

log = logging.getLogger("liveshop.media.pipe")

_HDR = struct.Struct("!BBHII")
TAG_BYTES = 16
SR_EVERY_S = 1.0  # sender reports and ``alive`` from the origin
JOIN_EVERY_S = 1.0  # ``join`` keepalives from a joining edge
JOIN_TIMEOUT_S = 5.0  # the origin stops piping to an edge silent this long
EDGE_TIMEOUT_S = 4.0  # an edge that hears nothing authentic this long ends its viewers
# The GOP priming is sent in one burst: the edge's socket must hold a whole GOP (a 2 s GOP
# of 720p at 1.5 Mbps is ≈ 400 kB; the kernel default is 208 kB). Capped by net.core.rmem_max.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def pipe_key(secret: str, show_id: str, epoch: str) -> bytes:
    """The per-pipe key: HMAC-SHA256 of (show, publisher epoch) under the server secret."""
    return hmac.digest(
        secret.encode(), b"liveshop-pipe\0" + show_id.encode() + b"\0" + epoch.encode(), "sha256"
    )


def seal(key: bytes, body: bytes) -> bytes:
    """``body`` + its 16-byte keyed BLAKE2b tag (one C call per datagram)."""
    return body + hashlib.blake2b(body, key=key, digest_size=TAG_BYTES).digest()


def unseal(key: bytes, data: bytes) -> bytes | None:
    """The body if the tag is right, else None (forged, corrupted or keyed for another pipe)."""
    body, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
    if len(data) <= TAG_BYTES or not hmac.compare_digest(
        hashlib.blake2b(body, key=key, digest_size=TAG_BYTES).digest(), tag
    ):
        metrics.PIPE_DROPPED.labels("auth").inc()
        return None
    return body


def _udp_socket(
    host: str, buffer_option: int, port_min: int = 0, port_max: int = 0
) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, buffer_option, SOCKET_BUFFER_BYTES)
    except OSError:
        pass  # the kernel default still works, with a less reliable instant join at the edge
    if port_min and port_max >= port_min:
        for port in range(port_min, port_max + 1):
            try:
                sock.bind((host, port))
                break
            except OSError:
                continue
        else:
            sock.close()
            raise OSError(f"no free UDP port for pipes in {port_min}-{port_max} on {host}")
    else:
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
    """The origin end: attached to a show's producers, sending to one edge address.

    With ``transport`` it shares the process's :class:`PipeServer` socket (an edge joined);
    without, it opens a socket of its own (``--media-workers``).
    """

    def __init__(
        self,
        show_id: str,
        producers: dict[str, Producer],
        edge: tuple[str, int],
        key: bytes,
        transport: asyncio.DatagramTransport | None = None,
    ) -> None:
        self.show_id = show_id
        self.producers = producers
        self.edge = edge
        self.key = key
        self.endpoint = _Endpoint(self.on_datagram)
        self.endpoint.transport = transport
        self._own_socket = transport is None
        self.tracks: list[_PipeTrack] = []
        self.closed = False
        self.last_join = time.monotonic()
        self.packets_sent = 0
        self._reported = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._own_socket:
            loop = asyncio.get_running_loop()
            local = "127.0.0.1" if self.edge[0] in ("127.0.0.1", "localhost") else "0.0.0.0"
            await loop.create_datagram_endpoint(
                lambda: self.endpoint, sock=_udp_socket(local, socket.SO_SNDBUF)
            )
        self.attach(self.producers)
        self.start_reports()

    def start_reports(self) -> None:
        """Sender reports and ``alive`` every second, until closed."""
        if self._task is None:
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
        if self.endpoint.transport is not None and not self.closed:
            self.endpoint.transport.sendto(seal(self.key, data), self.edge)
            self.packets_sent += 1

    def _control(self, message: dict[str, Any]) -> None:
        self._send(json.dumps(message).encode())

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """The edge's control datagrams: ``pli`` and ``join`` keepalives."""
        body = unseal(self.key, data)
        if body is None or not body.startswith(b"{"):
            return
        try:
            message = json.loads(body)
        except ValueError:
            return
        kind = message.get("type")
        if kind == "pli":
            producer = self.producers.get("video")
            if producer is not None:
                producer.request_keyframe()  # throttled at the origin too
        elif kind == "join":
            self.last_join = time.monotonic()
        elif kind == "leave":  # the edge closed: stop now rather than at the join timeout
            self.close()

    async def _sender_reports(self) -> None:
        while not self.closed:
            await asyncio.sleep(SR_EVERY_S)
            self._control({"type": "alive"})
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

    def report(self) -> None:
        delta, self._reported = self.packets_sent - self._reported, self.packets_sent
        if delta:
            metrics.PIPE_PACKETS.labels("out").inc(delta)

    def close(self) -> None:
        if self.closed:
            return
        self._control({"type": "bye"})
        self.closed = True
        self.report()
        if self._task is not None:
            self._task.cancel()
        for track in self.tracks:
            track.producer.remove_sink(track)
        if self._own_socket and self.endpoint.transport is not None:
            self.endpoint.transport.close()


class PipeServer(asyncio.DatagramProtocol):
    """The origin process's pipe address: edges of other processes and nodes join here.

    A ``join`` names the show and the publisher epoch it read from the origin directory;
    it is accepted only with a tag under that pipe's key, for a show live here with that
    epoch (``open_pipe`` decides, and returns the pipe). Later datagrams from the same
    address go to that pipe.
    """

    def __init__(
        self,
        secret: str,
        open_pipe: Callable[[str, str, tuple[str, int], bytes], PipeOrigin | None],
    ) -> None:
        self.secret = secret
        self.open_pipe = open_pipe
        self.pipes: dict[tuple[str, int], PipeOrigin] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def bind(self, host: str, port_min: int = 0, port_max: int = 0) -> int:
        loop = asyncio.get_running_loop()
        sock = _udp_socket(host, socket.SO_SNDBUF, port_min, port_max)
        await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.port = int(sock.getsockname()[1])
        return self.port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        pipe = self.pipes.get(addr)
        if pipe is not None and not pipe.closed:
            pipe.on_datagram(data, addr)
            return
        body = data[:-TAG_BYTES]
        try:
            message = json.loads(body)
            show, epoch = str(message["show"]), str(message["epoch"])
            if message.get("type") != "join":
                raise ValueError
        except (ValueError, KeyError, TypeError):
            metrics.PIPE_DROPPED.labels("malformed").inc()
            return
        key = pipe_key(self.secret, show, epoch)
        if unseal(key, data) is None:
            log.warning("pipe join from %s:%d failed authentication", *addr[:2])
            return
        pipe = self.open_pipe(show, epoch, addr, key)
        if pipe is None:
            metrics.PIPE_DROPPED.labels("not_origin").inc()
            return
        self.pipes[addr] = pipe

    def expire(self) -> list[PipeOrigin]:
        """Pipes whose edge stopped joining (or closed): forgotten, returned to be closed."""
        now = time.monotonic()
        gone = [
            (addr, pipe)
            for addr, pipe in self.pipes.items()
            if pipe.closed or now - pipe.last_join > JOIN_TIMEOUT_S
        ]
        for addr, _ in gone:
            del self.pipes[addr]
        return [pipe for _, pipe in gone]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class PipeEdge:
    """The edge end: producers fed from an origin's datagrams."""

    kind = "pipe"

    def __init__(
        self,
        show_id: str,
        on_ready: Callable[[PipeEdge], None],
        on_bye: Callable[[PipeEdge], Awaitable[None]],
        key: bytes,
        gop_max_packets: int = 6000,
    ) -> None:
        self.id = f"pipe-{show_id}"
        self.show_id = show_id
        self.key = key
        self.endpoint = _Endpoint(self._on_datagram)
        self.producers: dict[str, Producer] = {}
        self.by_ssrc: dict[int, Producer] = {}
        self.by_pt: dict[int, Producer] = {}
        self.origin: tuple[str, int] | None = None
        self.joined: tuple[tuple[str, int], str] | None = None  # (origin pipe address, epoch)
        self.ready = asyncio.Event()
        self.ended = False
        self.packets_received = 0
        self.dropped = 0
        self.last_heard = time.monotonic()
        self._reported = 0
        self._ending: asyncio.Future[None] | None = None
        self._on_ready = on_ready
        self._on_bye = on_bye
        self._gop_max_packets = gop_max_packets
        self._task: asyncio.Task[None] | None = None

    async def bind(self, host: str = "127.0.0.1", port_min: int = 0, port_max: int = 0) -> int:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: self.endpoint, sock=_udp_socket(host, socket.SO_RCVBUF, port_min, port_max)
        )
        assert self.endpoint.transport is not None
        self._task = asyncio.ensure_future(self._watch())
        return int(self.endpoint.transport.get_extra_info("sockname")[1])

    def join(self, origin: tuple[str, int], epoch: str) -> None:
        """Ask the origin process at ``origin`` to pipe the show here, and keep asking."""
        self.joined = (origin, epoch)
        self.origin = origin
        self._send_join()

    def _send_join(self) -> None:
        if self.joined is not None and self.endpoint.transport is not None:
            origin, epoch = self.joined
            body = json.dumps({"type": "join", "show": self.show_id, "epoch": epoch}).encode()
            self.endpoint.transport.sendto(seal(self.key, body), origin)

    async def _watch(self) -> None:
        """Keep the join alive; end when the origin has gone quiet."""
        while not self.ended:
            await asyncio.sleep(JOIN_EVERY_S)
            self._send_join()
            if time.monotonic() - self.last_heard > EDGE_TIMEOUT_S and (
                self.ready.is_set() or self.joined is not None
            ):
                log.warning("pipe for %s: origin silent, ending the edge", self.show_id)
                self._task = None
                await self.end()
                return

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr != self.origin and self.origin is not None:
            self.dropped += 1
            metrics.PIPE_DROPPED.labels("stranger").inc()
            return  # once the origin is known, only its socket feeds this edge
        body = unseal(self.key, data)
        if body is None:
            self.dropped += 1
            return
        self.last_heard = time.monotonic()
        if body[:1] == b"{":
            self._on_control(body, addr)
            return
        try:
            packet = RtpPacket.parse(body)
        except ValueError:
            return
        self.packets_received += 1
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
            self.endpoint.transport.sendto(seal(self.key, b'{"type": "pli"}'), self.origin)

    def report(self) -> None:
        delta, self._reported = self.packets_received - self._reported, self.packets_received
        if delta:
            metrics.PIPE_PACKETS.labels("in").inc(delta)

    async def end(self) -> None:
        """Close the producers and the socket, then the owner's ``on_bye``; every caller waits."""
        if self._ending is None:
            self.ended = True
            self.report()
            if self.joined is not None and self.endpoint.transport is not None:
                self.endpoint.transport.sendto(seal(self.key, b'{"type": "leave"}'), self.joined[0])
            if self._task is not None and self._task is not asyncio.current_task():
                self._task.cancel()
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

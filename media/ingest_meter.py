"""Ingest meter: what each local publisher sends, per second, written to Redis for the alerts.

A show's anomaly alerts (server/insight/alerts.py) run on whichever node leads the show's
commerce timers, which need not be the process holding the publisher (the show's origin, see
:mod:`media.origin`). So the origin reports what it receives: every second the server's timer
calls :meth:`IngestReporter.sample` and :meth:`IngestReporter.write`, which append one sample per
show whose WHIP publisher is here and has sent its first packet, ``epoch|t_ms|dt_ms|packets|bytes``
(the publisher's epoch, the sample's wall-clock time, the interval it covers, RTP packets and
payload bytes of all the publisher's tracks in it), to a Redis list of the last ``KEEP`` samples
that expires ``TTL_S`` after its last write. When the publisher leaves, ``epoch|t_ms|end`` is
appended instead, so a broadcast that ended is no stall; a process that dies simply stops
writing (its silence is a stall until the list expires).

Counting is a plain :class:`~media.sink.Sink` on each producer, added and dropped by the
reporter: two integer additions per packet, nothing inside the forwarding code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc.rtp import RtpPacket

from .producer import Producer
from .relay import Relay
from .whip import PublisherSession

KEEP = 90  # samples: a minute of baseline for the bitrate alert, and some
TTL_S = 90


class IngestMeter:
    """A sink on one producer: packets and payload bytes since the last :meth:`take`."""

    state = None  # not a viewer: the C fan-out hands it to forward() without an AttributeError

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.packets = 0
        self.bytes = 0
        self.closed = False

    def forward(self, packet: RtpPacket) -> None:
        self.packets += 1
        self.bytes += len(packet.payload)

    def producer_closed(self) -> None:
        self.closed = True

    def take(self) -> tuple[int, int]:
        counts = (self.packets, self.bytes)
        self.packets = self.bytes = 0
        return counts


@dataclass
class _Publisher:
    """What the reporter follows of one show's local publisher."""

    epoch: str
    meters: dict[Producer, IngestMeter] = field(default_factory=dict)
    started: bool = False  # a first packet arrived: from now on every interval is a sample
    at: float = field(default_factory=time.monotonic)


class IngestReporter:
    """Samples every local publisher's meters each ``EVERY_S`` and writes them to Redis."""

    def __init__(self, relay: Relay, redis: Any, key: Callable[[str], str]) -> None:
        self.relay = relay
        self.redis = redis
        self.key = key
        self.publishers: dict[str, _Publisher] = {}

    def sample(self) -> dict[str, str]:
        """One line per show to append now (a sample, or the end of a publisher)."""
        now, wall = time.monotonic(), int(time.time() * 1000)
        lines: dict[str, str] = {}
        live: set[str] = set()
        for show_id, router in list(self.relay.routers.items()):
            if not isinstance(router.publisher, PublisherSession) or not router.producers:
                continue
            live.add(show_id)
            state = self.publishers.get(show_id)
            if state is None or state.epoch != router.epoch:
                if state is not None and state.started:  # replaced here: the old one ended
                    lines[show_id] = f"{state.epoch}|{wall}|end"
                state = self.publishers[show_id] = _Publisher(router.epoch, at=now)
            packets = size = 0
            for producer, meter in list(state.meters.items()):
                p, b = meter.take()
                packets, size = packets + p, size + b
                if meter.closed or producer.closed:
                    producer.remove_sink(meter)
                    del state.meters[producer]
            for producer in router.producers.values():
                if producer not in state.meters and not producer.closed:
                    state.meters[producer] = meter = IngestMeter(producer.kind)
                    producer.add_sink(meter)
            dt_ms = max(1, round((now - state.at) * 1000))
            state.at = now
            state.started = state.started or packets > 0
            if state.started:
                lines[show_id] = f"{state.epoch}|{wall}|{dt_ms}|{packets}|{size}"
        for show_id in self.publishers.keys() - live:  # the publisher left this process
            state = self.publishers.pop(show_id)
            for producer, meter in state.meters.items():
                producer.remove_sink(meter)
            if state.started:
                lines[show_id] = f"{state.epoch}|{wall}|end"
        return lines

    async def write(self, lines: dict[str, str]) -> None:
        if not lines:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for show_id, line in lines.items():
                key = self.key(show_id)
                pipe.rpush(key, line)
                pipe.ltrim(key, -KEEP, -1)
                pipe.expire(key, TTL_S)
            await pipe.execute()

"""Sink: anything that takes a producer's RTP packets (mediasoup's Consumer, generalised).

A show's :class:`~media.router.Router` owns the producer → sinks relation; a
:class:`~media.producer.Producer` only loops over its sinks and calls ``forward`` once per
packet (the hot path). Sinks in the house today:

- a viewer's :class:`~media.consumer.Consumer` (a :class:`Joiner`: it starts at a keyframe);
- a pipe's track (:mod:`media.pipe`), writing each packet once to an edge;
- the recorder's tracks (:mod:`media.recorder`) and an HLS packager's tracks.

To add one, give it ``kind`` (``"audio"`` or ``"video"``), ``forward(packet)`` and
``producer_closed()``, and hand it to ``Router.add_sink`` (or ``Producer.add_sink`` for a
sink that follows one producer only). ``forward`` runs inside the producer's receive
callback: it must be quick and must not await; an exception is logged and the other sinks
still get the packet. The packet is shared by every sink: never mutate it.
"""

from __future__ import annotations

import enum
from typing import Protocol

from aiortc.rtp import RtpPacket


class Sink(Protocol):
    """Takes every packet of one producer from the moment it is added."""

    kind: str

    def forward(self, packet: RtpPacket) -> None:
        """One RTP packet, unchanged from the publisher (RTX already unwrapped)."""

    def producer_closed(self) -> None:
        """The producer went away (publisher ended or replaced): no more packets from it."""


class Joiner(Sink, Protocol):
    """A sink that must start at a decodable point (a viewer's consumer)."""

    def sync_next(self) -> None:
        """Audio, or video without a GOP cache: start with the next packet."""

    def wait_keyframe(self) -> None:
        """No keyframe cached yet: drop packets until the producer calls ``catch_up``."""

    def catch_up(self, snapshot: list[RtpPacket]) -> None:
        """Start from these cached packets (keyframe first), then live."""


class SinkListener(Protocol):
    """Who owns a sink's relation (the Router): told when the sink closes by itself."""

    def sink_closed(self, sink: Sink) -> None: ...


class ConsumerState(enum.Enum):
    """Where a viewer's consumer is between attach and live (see ``Consumer.forward``)."""

    NEW = "new"  # not attached to a producer
    WAITING = "waiting"  # attached, waiting for a keyframe
    SYNC = "sync"  # will rebase sequence/timestamp on the next packet
    CATCHUP = "catchup"  # sending the cached GOP; live packets are queued meanwhile
    LIVE = "live"  # every packet is forwarded
    CLOSED = "closed"

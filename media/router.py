"""Router: the media of one show — its producers and every sink hanging off them.

As in mediasoup, the Router owns the producer → sinks relation: viewers' consumers, pipes to
edges, the recorder and packagers are all :class:`~media.sink.Sink`\\ s added here, and a
replacement publisher's producers take over every consumer in one place
(:meth:`Router.set_producers`). Consumers report up through the
:class:`~media.sink.SinkListener` interface (``sink_closed``), so this module needs no
knowledge of WHEP sessions, and ``consumer.py`` / ``whep.py`` import it, never the reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import metrics
from .consumer import Consumer
from .producer import Producer
from .session import Session
from .sink import Sink

if TYPE_CHECKING:
    from .hls import HlsPackager
    from .pipe import PipeEdge, PipeOrigin
    from .recorder import Recorder
    from .whip import PublisherSession


class Router:
    """One per show (mediasoup's Router): producers by kind, sinks, viewers by session id."""

    def __init__(self, show_id: str) -> None:
        self.show_id = show_id
        self.publisher: PublisherSession | PipeEdge | None = None  # WHIP, or an edge's pipe
        self.producers: dict[str, Producer] = {}
        self.sinks: list[Sink] = []  # everything fed by this router's producers
        self.viewers: dict[str, Session] = {}
        self.recorder: Recorder | None = None
        self.hls: HlsPackager | None = None  # LL-HLS while live with H.264 (media/hls)
        self.pipes: list[PipeOrigin] = []  # origin side: edges fed from this router
        self.edge: PipeEdge | None = None  # edge side: the pipe feeding this router
        self.epoch = ""  # the publisher's epoch (origin directory; an edge: its origin's)
        self.idle_since: float | None = None  # an edge with no viewers since (monotonic)

    @property
    def live(self) -> bool:
        return self.publisher is not None

    # ------------------------------------------------------------------ sinks
    def add_sink(self, sink: Sink) -> bool:
        """Feed ``sink`` from the producer of its kind (a consumer starts at a keyframe).

        Returns False when the show has no producer of that kind right now; the sink stays
        registered and is fed once a (replacement) publisher brings one.
        """
        if sink not in self.sinks:
            self.sinks.append(sink)
        producer = self.producers.get(sink.kind)
        if producer is None:
            return False
        if isinstance(sink, Consumer):
            sink.attach(producer)
        else:
            producer.add_sink(sink)
        return True

    def remove_sink(self, sink: Sink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
        if isinstance(sink, Consumer):
            sink.detach()
        else:
            for producer in self.producers.values():
                producer.remove_sink(sink)

    def sink_closed(self, sink: Sink) -> None:
        """SinkListener: a consumer closed by itself (its viewer left)."""
        if sink in self.sinks:
            self.sinks.remove(sink)

    # ------------------------------------------------------------------ producers
    def set_producers(self, producers: dict[str, Producer]) -> None:
        """Install a (new) publisher's producers and move every consumer onto them.

        Consumers are registered once connected, so all of them follow, including those whose
        producer already closed under them (an edge re-homed to a new origin).
        """
        old = self.producers
        self.producers = producers
        for sink in self.sinks:
            if isinstance(sink, Consumer):
                new = producers.get(sink.kind)
                if new is not None:
                    sink.attach(new)
        for pipe in self.pipes:  # edges carry on with the replacement publisher too
            pipe.attach(producers)
        for producer in old.values():
            producer.close()  # what is still on them (a recorder's tracks) is told so
        metrics.PUBLISHERS.labels(self.show_id).set(1 if producers else 0)

    def clear_producers(self) -> None:
        for sink in self.sinks:
            if isinstance(sink, Consumer):
                sink.detach()
        for producer in self.producers.values():
            producer.close()
        self.producers = {}
        metrics.PUBLISHERS.labels(self.show_id).set(0)

    def report(self) -> None:
        for producer in self.producers.values():
            producer.report()
        for sink in self.sinks:
            if isinstance(sink, Consumer):
                sink.report()
        metrics.VIEWERS.labels(self.show_id).set(len(self.viewers))

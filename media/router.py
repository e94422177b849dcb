"""Router: the media of one show — its publisher's producers and its viewers' consumers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import metrics
from .producer import Producer

if TYPE_CHECKING:
    from .hls import HlsPackager
    from .pipe import PipeEdge, PipeOrigin
    from .recorder import Recorder
    from .whep import ViewerSession
    from .whip import PublisherSession


class Router:
    """One per show (mediasoup's Router): producers by kind, viewers by session id."""

    def __init__(self, show_id: str) -> None:
        self.show_id = show_id
        self.publisher: PublisherSession | None = None
        self.producers: dict[str, Producer] = {}
        self.viewers: dict[str, ViewerSession] = {}
        self.recorder: Recorder | None = None
        self.hls: HlsPackager | None = None  # LL-HLS while live with H.264 (media/hls)
        self.pipes: list[PipeOrigin] = []  # origin side: edges fed from this router
        self.edge: PipeEdge | None = None  # edge side: the pipe feeding this router

    @property
    def live(self) -> bool:
        return self.publisher is not None

    def set_producers(self, producers: dict[str, Producer]) -> None:
        """Install a (new) publisher's producers and move every connected viewer onto them."""
        old = self.producers
        self.producers = producers
        for viewer in self.viewers.values():
            for consumer in viewer.consumers:
                new = producers.get(consumer.kind)
                if new is not None and consumer.producer is not None:
                    consumer.attach(new)
        for pipe in self.pipes:  # edges carry on with the replacement publisher too
            pipe.attach(producers)
        for producer in old.values():
            producer.close()
        metrics.PUBLISHERS.labels(self.show_id).set(1 if producers else 0)

    def clear_producers(self) -> None:
        for viewer in self.viewers.values():
            for consumer in viewer.consumers:
                consumer.detach()
        for producer in self.producers.values():
            producer.close()
        self.producers = {}
        metrics.PUBLISHERS.labels(self.show_id).set(0)

    def report(self) -> None:
        for producer in self.producers.values():
            producer.report()
        for viewer in self.viewers.values():
            for consumer in viewer.consumers:
                consumer.report()
        metrics.VIEWERS.labels(self.show_id).set(len(self.viewers))

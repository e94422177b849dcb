"""The join snapshot: a show's state for one client, read in ONE pipelined Redis round trip.

Joins must stay cheap in a join storm, so the welcome reads everything at once; but each service
owns its keys. So every service holding state a joining client needs (chat history, presence,
likes, moderation) registers a :class:`SnapshotPart` in ``app[SNAPSHOT_PARTS]``: it queues its
own reads on the shared pipeline and parses its own results into the snapshot. The gateway (the
welcome) and the hub (``resync`` after a pub/sub gap) use :func:`take` and know no service's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from ..appkeys import REDIS


@dataclass(frozen=True)
class SnapshotRequest:
    """Who asks: a joining user (welcome) or, with ``user_id`` None, a hub after a pub/sub gap."""

    show_id: str
    user_id: str | None = None
    since: str | None = None  # the newest chat id the client has (recovery)
    client_epoch: str | None = None
    resync: bool = False  # a hub's resync: the history after ``since`` must fit the limit


@dataclass
class Snapshot:
    """What the parts found: welcome/resync fields, the first batch of events, the chat floor."""

    fields: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    recovered: bool = False
    floor: tuple[int, int] | None = None  # newest chat id the client has after the first batch


class SnapshotPart(Protocol):
    """A service's share of the snapshot."""

    def snapshot_reads(self, app: web.Application, pipe: Any, request: SnapshotRequest) -> int:
        """Queue this service's reads on ``pipe``; return how many commands were queued."""
        ...

    async def snapshot_parse(
        self, app: web.Application, request: SnapshotRequest, results: list[Any], snap: Snapshot
    ) -> None:
        """Read this service's results (in queue order) into ``snap``; may raise ApiError."""
        ...


SNAPSHOT_PARTS = web.AppKey("snapshot_parts", list[SnapshotPart])


async def take(app: web.Application, request: SnapshotRequest) -> Snapshot:
    """Every part's reads in one pipeline, then every part's parse, in registration order."""
    parts = app[SNAPSHOT_PARTS]
    pipe = app[REDIS].pipeline(transaction=False)
    counts = [part.snapshot_reads(app, pipe, request) for part in parts]
    results = await pipe.execute()
    snap = Snapshot()
    at = 0
    for part, count in zip(parts, counts, strict=True):
        await part.snapshot_parse(app, request, results[at : at + count], snap)
        at += count
    return snap


def setup(app: web.Application) -> None:
    app[SNAPSHOT_PARTS] = []

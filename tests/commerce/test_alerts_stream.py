"""Stream alerts: a stall and a bitrate collapse, seen by any node from the origin's samples.

The origin writes what its publisher sends each second (media/ingest_meter.py); the rules run
on whichever node evaluates the show's alerts. First the rules on samples written straight
into Redis with the alert clock driven by the test, then a real aiortc publisher on node B
that thins its stream to a trickle, then sends nothing, then resumes, while node A (which
holds none of the media) evaluates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamTrack

from media.publish import PublishOptions
from server.app import create_app
from server.appkeys import REDIS
from server.commerce import keys as ck
from server.commerce.stats import show_stats
from server.insight import alerts
from server.media_api import RELAY
from tests.media.peers import SMALL, TestPublisher


@pytest.fixture
async def node_b(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(create_app(settings))


async def _tick(app: Any, show_id: str, now_ms: int | None = None) -> dict[str, dict[str, Any]]:
    """One evaluation of the show's alerts; kind → the change it made."""
    stats = await show_stats(app, show_id)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return {x["alert"]: x for x in await alerts.evaluate(app, show_id, stats, now)}


async def _tick_until(app: Any, show_id: str, kind: str, state: str, within_s: float = 20.0) -> Any:
    """Evaluate on ``app`` until ``kind`` changes to ``state``; that change."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        change = (await _tick(app, show_id)).get(kind)
        if change is not None and change["state"] == state:
            return change
        await asyncio.sleep(0.2)
    raise AssertionError(f"{kind} never went {state}; samples: {await _samples(app, show_id)}")


async def _samples(app: Any, show_id: str) -> list[alerts.IngestSample]:
    """What the show's current publisher's origin wrote."""
    return alerts.current_publisher(await app[REDIS].lrange(alerts.ingest_key(show_id), 0, -1))


async def _until(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_stall_and_collapse_rules_on_origin_samples(client: Any, make_show: Any) -> None:
    show, _ = await make_show("Stream rules")  # no commerce: no node's timer evaluates it
    app, key = client.app, alerts.ingest_key(show)
    redis = app[REDIS]
    t0 = int(time.time() * 1000) - 120_000  # the test's alert clock

    async def write(first: int, last: int, packets: int, size: int, epoch: str = "E1") -> None:
        await redis.rpush(key, *(f"{epoch}|{t0 + s * 1000}|1000|{packets}|{size}"
                                 for s in range(first, last + 1)))  # fmt: skip

    await redis.rpush(key, "E1|not-a-time|1000|1|1")  # skipped, and no rule breaks over it
    await write(1, 20, 150, 50_000)  # 20 s at 400 kbit/s
    assert await _tick(app, show, t0 + 20_300) == {}
    await write(21, 25, 50, 5_000)  # 5 s at 40 kbit/s: 10 % of the median, packets still flowing
    changes = await _tick(app, show, t0 + 25_300)
    assert changes.keys() == {"bitrate_collapse"}
    collapse = changes["bitrate_collapse"]
    assert collapse["state"] == "firing"
    assert (collapse["kbps"], collapse["median_kbps"], collapse["ratio"]) == (40.0, 400.0, 0.1)
    assert await _tick(app, show, t0 + 25_600) == {}  # once per episode
    await write(26, 26, 0, 0)  # silent for a second: still the collapse, not yet a stall
    assert await _tick(app, show, t0 + 26_300) == {}
    await write(27, 29, 0, 0)  # nothing at all: a stall (and no collapse alert beside it)
    changes = await _tick(app, show, t0 + 29_300)
    assert (changes["stream_stall"]["state"], changes["bitrate_collapse"]["state"]) == (
        "firing",
        "clear",
    )
    assert changes["stream_stall"]["quiet_s"] == 4.3
    assert changes["stream_stall"]["last_packet_at"] == t0 + 25_000
    await write(30, 30, 5, 300)  # packets again, a trickle at first: the stall is over …
    changes = await _tick(app, show, t0 + 30_300)
    assert changes.keys() == {"stream_stall"} and changes["stream_stall"]["state"] == "clear"
    await write(31, 31, 150, 50_000)  # … and that trickle was no collapse either
    assert await _tick(app, show, t0 + 31_300) == {}
    await redis.rpush(key, f"E1|{t0 + 32_000}|end")  # the publisher left: silence is no stall
    assert await _tick(app, show, t0 + 40_000) == {}
    await write(41, 41, 150, 50_000, epoch="E2")  # a new publisher: judged on its own samples
    assert [x.at for x in alerts.current_publisher(await redis.lrange(key, 0, -1))] == [t0 + 41_000]
    assert await _tick(app, show, t0 + 42_000) == {}  # its 20 s of history are not the old one's
    kinds = [(x["alert"], x["state"]) for x in await alerts.history(app, show)]
    assert kinds == [
        ("bitrate_collapse", "firing"),
        ("stream_stall", "firing"),
        ("bitrate_collapse", "clear"),
        ("stream_stall", "clear"),
    ]


class ThrottledTrack(MediaStreamTrack):
    """Passes on one in ``every`` of another track's frames (0: none) and drops the rest, so
    the sender sends less or nothing, at the live pace and without a burst when it resumes."""

    def __init__(self, inner: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = inner.kind
        self.inner = inner
        self.every = 1
        self._count = 0

    async def recv(self) -> Any:
        while True:
            frame = await self.inner.recv()
            self._count += 1
            if self.every and self._count % self.every == 0:
                return frame


async def test_a_publisher_on_node_b_that_pauses_is_seen_stalling_from_node_a(
    shop: Any, node_b: Any
) -> None:
    a, show = shop.client.app, shop.show_id
    settings = a[alerts.SETTINGS]  # shared by both nodes
    settings.alert_bitrate_baseline_min_s = 3  # judge after 3 s of history (60 s in production)
    await a[REDIS].set(ck.leader(show), "held-by-the-test", px=120_000)  # only node A's ticks
    publisher = TestPublisher(PublishOptions(**SMALL, preencode_s=2))
    tracks: dict[str, ThrottledTrack] = {}
    for sender in publisher.pc.getSenders():
        tracks[sender.track.kind] = ThrottledTrack(sender.track)
        sender.replaceTrack(tracks[sender.track.kind])
    await a[REDIS].zrem(ck.COMMERCE_SHOWS, show)  # as if the show had no commerce going on
    await publisher.publish(node_b.app[RELAY], show)
    try:
        assert show not in a[RELAY].routers  # node A holds none of the media

        async def flowing() -> bool:
            return len([x for x in await _samples(a, show) if x.packets]) >= 4

        await _until(flowing, "the origin wrote no samples")
        assert await a[REDIS].zscore(ck.COMMERCE_SHOWS, show)  # a live show's timers run
        tracks["video"].every, tracks["audio"].every = 0, 10  # packets flow, bitrate collapses
        collapse = await _tick_until(a, show, "bitrate_collapse", "firing")
        assert collapse["ratio"] < 0.25 and collapse["kbps"] < collapse["median_kbps"] / 4
        tracks["audio"].every = 0  # nothing at all
        stall = await _tick_until(a, show, "stream_stall", "firing")
        assert stall["quiet_s"] >= 3.0 and "no media packets" in stall["reason"]
        for track in tracks.values():
            track.every = 1
        resumed = await _tick_until(a, show, "stream_stall", "clear")
        assert "flowing" in resumed["reason"]
        kinds = [(x["alert"], x["state"]) for x in await alerts.history(node_b.app, show)]
        assert kinds == [
            ("bitrate_collapse", "firing"),
            ("stream_stall", "firing"),
            ("bitrate_collapse", "clear"),
            ("stream_stall", "clear"),
        ]
        await node_b.app[RELAY].sessions[publisher.session_id].end()

        async def ended() -> bool:
            return not await _samples(a, show)

        await _until(ended, "the origin wrote no end of the publisher")
    finally:
        await publisher.close()

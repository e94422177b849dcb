"""The ingest reporter with real aiortc publishers: samples, a replacement, the end, in Redis."""

from __future__ import annotations

import asyncio
import secrets
import time

import redis.asyncio as aioredis

from media.ingest_meter import KEEP, IngestMeter, IngestReporter
from media.publish import PublishOptions
from media.relay import Relay, RelayConfig

from .peers import SMALL, TestPublisher


async def _next_sample(reporter: IngestReporter, show_id: str, within_s: float = 15.0) -> str:
    """Sample (as the server's timer does each second) until the show has a line; that line."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        line = reporter.sample().get(show_id)
        if line is not None:
            return line
        await asyncio.sleep(0.1)
    raise AssertionError("no sample")


async def test_samples_follow_the_publisher_its_replacement_and_its_end(redis_url: str) -> None:
    show = "ingest-" + secrets.token_hex(4)
    relay = Relay(RelayConfig(connect_timeout_s=10.0))
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    reporter = IngestReporter(relay, redis, lambda show_id: f"{{{show_id}}}:test:ingest")
    first = TestPublisher(PublishOptions(codec="vp8", audio=False, **SMALL))
    second = TestPublisher(PublishOptions(codec="vp8", audio=False, **SMALL))
    try:
        await first.publish(relay, show)
        producer = relay.routers[show].producers["video"]
        line = await _next_sample(reporter, show)  # from the first interval with packets
        epoch, _, span, packets, size = line.split("|")
        assert epoch == first.session_id and int(span) > 0
        assert 0 < int(packets) <= producer.packets_received and int(size) > int(packets)
        assert sum(isinstance(s, IngestMeter) for s in producer.sinks) == 1
        await reporter.write({show: line})
        key = f"{{{show}}}:test:ingest"
        assert await redis.lrange(key, 0, -1) == [line] and 0 < await redis.ttl(key) <= 90

        await second.publish(relay, show, replace=True)
        ended = reporter.sample()[show]  # the old publisher's end, at once
        assert ended.startswith(f"{first.session_id}|") and ended.endswith("|end")
        line = await _next_sample(reporter, show)
        assert line.split("|")[0] == second.session_id and not line.endswith("|end")
        new_producer = relay.routers[show].producers["video"]
        assert sum(isinstance(s, IngestMeter) for s in new_producer.sinks) == 1

        await relay.sessions[second.session_id].end()
        ended = reporter.sample()[show]
        assert ended.startswith(f"{second.session_id}|") and ended.endswith("|end")
        assert reporter.sample() == {}  # nothing more once the show has no publisher here
        for i in range(KEEP + 5):  # a long show keeps only the newest samples
            await reporter.write({show: f"E|{i}|1000|1|1"})
        kept = await redis.lrange(key, 0, -1)
        assert len(kept) == KEEP and kept[-1] == f"E|{KEEP + 4}|1000|1|1"
    finally:
        await first.close()
        await second.close()
        await relay.close()
        await redis.delete(f"{{{show}}}:test:ingest")
        await redis.aclose()

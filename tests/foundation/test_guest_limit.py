"""The guest-token limiter's counter always expires (INCR and EXPIRE in one script)."""

from __future__ import annotations

import time
from typing import Any

from server.appkeys import REDIS


async def test_guest_counter_always_gets_a_ttl(client: Any, make_show: Any) -> None:
    show_id, _ = await make_show()
    redis = client.app[REDIS]
    for _ in range(3):  # the bucket is per minute: redo it if the minute turned meanwhile
        minute = int(time.time() // 60)
        bucket = f"liveshop:guest_rate:127.0.0.1:{minute}"
        # A counter left without a TTL (the old INCR-then-EXPIRE lost its EXPIRE) heals on next hit.
        await redis.delete(bucket)
        await redis.set(bucket, 1)
        assert await redis.ttl(bucket) == -1
        resp = await client.post(f"/api/shows/{show_id}/guest", json={})
        assert resp.status == 201
        if int(time.time() // 60) == minute:
            break
    assert 0 < await redis.ttl(bucket) <= 120
    assert int(await redis.get(bucket)) == 2
    await redis.delete(bucket)

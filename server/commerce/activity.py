"""Which shows have commerce going on: a sorted set show → "active until" (ms).

The order consumer and the per-show timers only look at active shows, so a node's background
work follows the live shows rather than every show ever created. Creating products, sales,
coupons or giveaways, buying and reading stats keep a show active for a while; a giveaway
keeps it active until its draw.
"""

from __future__ import annotations

import time

from aiohttp import web

from ..appkeys import REDIS, SETTINGS
from . import keys as ck

MIN_WINDOW_MS = 15 * 60 * 1000


async def touch(app: web.Application, show_id: str, until_ms: int | None = None) -> None:
    """Keep the show active until ``until_ms`` (default: long enough for every reservation to expire)."""
    now = int(time.time() * 1000)
    window = max(MIN_WINDOW_MS, 2 * app[SETTINGS].reservation_ttl_s * 1000 + 120_000)
    await app[REDIS].zadd(ck.COMMERCE_SHOWS, {show_id: max(until_ms or 0, now + window)}, gt=True)


async def active_shows(app: web.Application) -> list[str]:
    redis = app[REDIS]
    now = int(time.time() * 1000)
    if await redis.zcount(ck.COMMERCE_SHOWS, "-inf", f"({now}"):
        await redis.zremrangebyscore(ck.COMMERCE_SHOWS, "-inf", f"({now}")
    return list(await redis.zrangebyscore(ck.COMMERCE_SHOWS, now, "+inf"))

"""``--demo``: a demo show, started fresh on every run, and the URLs to click through it.

A demo that comes back exactly as it was left ("ended", yesterday's chat, a sale still counting
down) confuses a first-time host, so every start wipes the demo show's keys and seeds it again;
``--demo-keep`` keeps it as it was left instead.
"""

from __future__ import annotations

from aiohttp import web

from .appkeys import DEMO_SEEDERS, REDIS, SETTINGS
from .redis import keys
from .shows import create_show

DEMO_SHOW_ID = "demo"


async def reset_demo(app: web.Application, show_id: str = DEMO_SHOW_ID) -> int:
    """Delete every key of the demo show (they all share its ``{show:ID}`` hash tag); returns
    how many were deleted. Only ever called for the demo show."""
    redis = app[REDIS]
    doomed = [key async for key in redis.scan_iter(match=keys.show_tag(show_id) + "*", count=500)]
    for start in range(0, len(doomed), 500):
        await redis.delete(*doomed[start : start + 500])
    await redis.zrem(keys.SHOW_INDEX, show_id)
    return len(doomed)


async def ensure_demo(app: web.Application, fresh: bool = False) -> dict[str, str]:
    """Create the demo show and its content (``fresh``: after wiping the previous run's state);
    return the host and viewer URLs."""
    if fresh:
        await reset_demo(app)
    show, host_token, created = await create_show(
        app, "liveshop demo — spring sneaker drop", "Demo Host", DEMO_SHOW_ID
    )
    if created:
        for seed in app[DEMO_SEEDERS]:
            await seed(app, DEMO_SHOW_ID)
    base = app[SETTINGS].base_url
    return {
        "show_id": show["id"],
        "host_url": f"{base}/host/{show['id']}#token={host_token}",
        "viewer_url": f"{base}/watch/{show['id']}",
        "host_token": host_token,
        "fresh": "yes" if fresh else "no",
    }

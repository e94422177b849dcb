"""``--demo``: a demo show (created once, reused after) and the URLs to click through it."""

from __future__ import annotations

from aiohttp import web

from .appkeys import DEMO_SEEDERS, SETTINGS
from .shows import create_show

DEMO_SHOW_ID = "demo"


async def ensure_demo(app: web.Application) -> dict[str, str]:
    """Create the demo show and its content if missing; return the host and viewer URLs."""
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
    }

"""The aiohttp application: typed state, one start-up and one shutdown path, the parts wired in."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from .appkeys import COMMANDS, DEMO_SEEDERS, REDIS, SETTINGS
from .config import Settings
from .errors import error_middleware
from .health import metrics_middleware
from .protocol import Registry
from .redis.embedded import EmbeddedRedis
from .redis.store import connect

log = logging.getLogger("liveshop.app")

# Each part is a module with ``setup(app)`` adding its routes, handlers and cleanup contexts.
# Order matters only for cleanup: contexts close in reverse, and Redis (added first) closes last.
PARTS: tuple[str, ...] = (
    "server.health",
    "server.shows",
    "server.access",
    "server.openapi",
    "server.clock",
    "server.ws.snapshot",  # before the services that add their part of the join snapshot
    "server.ws.hub",  # before the services that listen to its events
    "server.realtime.moderation",
    "server.realtime.chat",
    "server.realtime.presence",
    "server.realtime.likes",
    "server.ws.gateway",
    "server.commerce",
    "server.web",
    "server.media_api",
    "server.cohost",
    "server.hls_api",
    "server.insight",
    "server.realtime.pk",
    "server.insight.replay",
)

EMBEDDED_REDIS = web.AppKey("embedded_redis", EmbeddedRedis)


# Set (with the reason) when the node cannot go on, e.g. its embedded Redis cannot come back:
# ``serve`` then shuts down and the process exits non-zero for its supervisor to restart it.
class NodeFatal:
    """Why the node must stop (empty while it is fine); ``event`` is set with ``reason``."""

    def __init__(self) -> None:
        self.event = asyncio.Event()  # binds to the running loop on first wait (Python ≥ 3.10)
        self.reason = ""

    def fail(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


FATAL = web.AppKey("node_fatal", NodeFatal)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to the configured Redis, or start the embedded one; close/stop it last."""
    settings = app[SETTINGS]
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if not url:
        embedded = EmbeddedRedis(settings.data_dir)
        url = embedded.start()
        app[EMBEDDED_REDIS] = embedded
    try:
        app[REDIS] = await connect(url, cluster=settings.redis_cluster)
    except BaseException:
        if embedded:
            embedded.stop()
        raise
    supervisor = None
    if embedded:
        supervisor = asyncio.create_task(embedded.supervise(app[FATAL].fail))
    yield
    if supervisor is not None:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
    await app[REDIS].aclose()
    if embedded:
        embedded.stop()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware], client_max_size=1024**2
    )
    app[SETTINGS] = settings
    app[FATAL] = NodeFatal()
    app[COMMANDS] = Registry()
    app[DEMO_SEEDERS] = []
    app.cleanup_ctx.append(redis_ctx)
    for name in PARTS:
        importlib.import_module(name).setup(app)
    return app

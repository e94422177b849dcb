"""Typed application state: every object stored on the aiohttp app has its AppKey here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .config import Settings
from .protocol.registry import Registry
from .redis.store import Redis

# Seeds demo content for a show (products, …); parts append theirs at setup.
DemoSeeder = Callable[[web.Application, str], Awaitable[None]]

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)  # type: ignore[arg-type]
# The WebSocket commands and events every part registers (server.protocol).
COMMANDS = web.AppKey("ws_commands", Registry)
DEMO_SEEDERS = web.AppKey("demo_seeders", list[DemoSeeder])

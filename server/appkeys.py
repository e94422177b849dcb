"""Typed application state: every object stored on the aiohttp app has its AppKey here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .config import Settings
from .store import Redis

if TYPE_CHECKING:
    from .auth import Claims

# A WebSocket command handler: (app, the sender's claims, the decoded message) → reply fields.
WsHandler = Callable[[web.Application, "Claims", dict[str, Any]], Awaitable[dict[str, Any] | None]]
# Seeds demo content for a show (products, …); parts append theirs at setup.
DemoSeeder = Callable[[web.Application, str], Awaitable[None]]

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)  # type: ignore[arg-type]
WS_HANDLERS = web.AppKey("ws_handlers", dict[str, WsHandler])
DEMO_SEEDERS = web.AppKey("demo_seeders", list[DemoSeeder])

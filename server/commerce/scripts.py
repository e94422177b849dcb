"""The commerce Lua scripts, registered once per app (EVALSHA with EVAL fallback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..appkeys import REDIS
from ..store import load_script

HERE = Path(__file__).parent


@dataclass
class Scripts:
    buy: Any
    sale_create: Any
    order: Any
    pin: Any
    coupon_claim: Any
    orders_apply: Any


SCRIPTS = web.AppKey("commerce_scripts", Scripts)


async def scripts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Register the scripts once Redis is connected."""
    redis = app[REDIS]
    app[SCRIPTS] = Scripts(
        **{name: load_script(redis, HERE / f"{name}.lua") for name in Scripts.__dataclass_fields__}
    )
    yield

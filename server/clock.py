"""The app clock: wall time in ms unless a test installs or advances its own.

Every Lua script that decides a time window (sale start and end, coupon expiry, auctions,
group buys, polls) takes ``now_ms`` from here instead of calling Redis ``TIME``, so tests move
the clock past a window instead of sleeping. Scripts that order events across nodes or expire
state on their own (chat ids, presence, reservation sweeps in ``order.lua``) keep Redis ``TIME``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

Clock = Callable[[], int]


class AppClock:
    """Wall time plus an offset that tests advance (``app[CLOCK].advance(1100)``)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def advance(self, ms: int) -> None:
        self.offset_ms += ms


CLOCK: web.AppKey[Clock] = web.AppKey("clock")


def now_ms(app: web.Application) -> int:
    """The app clock (ms): wall time unless a test installed its own ``app[CLOCK]``."""
    clock = app.get(CLOCK)
    return clock() if clock is not None else int(time.time() * 1000)


def setup(app: web.Application) -> None:
    app[CLOCK] = AppClock()

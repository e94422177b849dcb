"""Waiting on a condition instead of sleeping a guessed time (tests only).

A fixed sleep is either too short on a loaded CI machine (a flaky failure) or too long
everywhere else; polling the condition the test is really waiting for is neither.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(predicate: Callable[[], object], within: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``within`` seconds pass; its last value."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)  # noqa: ASYNC110 - the condition lives outside any event
    return bool(predicate())

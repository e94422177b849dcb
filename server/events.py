"""Publishing show events to every node.

Services (chat, sales, lottery, presence, …) call :func:`publish`; every node's per-show hub
receives the event from Redis pub/sub, batches it and writes it to its local viewers. Events
marked ``droppable`` (plain danmaku) may be skipped for a viewer that cannot keep up; all
others (staff messages, commerce) are never dropped.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from . import keys
from .appkeys import REDIS


def encode_event(event: dict[str, Any], droppable: bool, staff_only: bool = False) -> str:
    wrapper = {"d": int(droppable), "s": int(staff_only), "e": event}
    return json.dumps(wrapper, separators=(",", ":"), ensure_ascii=False)


def decode_event(raw: str | bytes) -> tuple[dict[str, Any], bool, bool]:
    """(event, droppable, staff_only)"""
    wrapper = json.loads(raw)
    return wrapper["e"], bool(wrapper["d"]), bool(wrapper.get("s"))


async def publish(
    app: web.Application,
    show_id: str,
    event: dict[str, Any],
    *,
    droppable: bool = False,
    staff_only: bool = False,
) -> None:
    """Send ``event`` (a dict with a ``type``) to every viewer of the show on every node.

    ``staff_only`` events (live stats, audit) reach only the host and moderators.
    """
    await app[REDIS].publish(keys.channel(show_id), encode_event(event, droppable, staff_only))

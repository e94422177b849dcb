"""Every Redis key in one place.

All keys of one show share the hash tag ``{show:ID}``, so a show lives in one Redis Cluster
slot and multi-key Lua scripts stay legal on a cluster. Global keys (the show index) are
single-key operations only.
"""

from __future__ import annotations

SHOW_INDEX = "liveshop:shows"  # sorted set: show id → created_at (ms)


def show_tag(show_id: str) -> str:
    return "{show:" + show_id + "}"


def show_key(show_id: str, *parts: str) -> str:
    """``{show:ID}:part:part`` — the one way to name a per-show key."""
    return ":".join((show_tag(show_id), *parts))


def meta(show_id: str) -> str:
    return show_key(show_id, "meta")


def channel(show_id: str) -> str:
    """Pub/sub channel carrying the show's events to every node."""
    return show_key(show_id, "events")


def chat_stream(show_id: str) -> str:
    """Bounded stream of danmaku (history for reconnect recovery). Fields: uid, name, role, text, ts."""
    return show_key(show_id, "chat")


def counters(show_id: str) -> str:
    """Hash of running totals read by live stats: chat_messages, likes, product_clicks, …"""
    return show_key(show_id, "counters")


def orders_stream(show_id: str) -> str:
    """The show's order events (reserved, paid, expired, cancelled, failed)."""
    return show_key(show_id, "orders")

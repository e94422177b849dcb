"""Every Redis key in one place.

All keys of one show share the hash tag ``{show:ID}``, so a show lives in one Redis Cluster
slot and multi-key Lua scripts stay legal on a cluster. Global keys (the show index) are
single-key operations only.
"""

from __future__ import annotations

SHOW_INDEX = "liveshop:shows"  # sorted set: show id → created_at (ms)
MEDIA_NODES = "liveshop:media:nodes"  # hash process id → JSON load line (media/origin.py)
REVOKED = "liveshop:revoked"  # hash "SHOW/USER" → revoked_at (s) (server/revocation.py)
NODE_CHANNEL = "liveshop:nodes"  # pub/sub: events for every node (server/redis/broker.py broadcast)


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


# Real-time layer (chat, presence, moderation).


def chat_epoch(show_id: str) -> str:
    """Random string identifying this incarnation of the chat history (changes if history is reset)."""
    return show_key(show_id, "chat", "epoch")


def chat_trimmed(show_id: str) -> str:
    """Id of the newest danmaku trimmed out of the history: a client that saw it or later lost nothing."""
    return show_key(show_id, "chat", "trimmed")


def chat_second(show_id: str, second: int) -> str:
    """Danmaku count in one wall-clock second (expires after ~2 min); summed for chat per minute."""
    return show_key(show_id, "chat", "sec", str(second))


def chat_bucket(show_id: str, user_id: str) -> str:
    """Token bucket (hash tokens, ts) limiting one user's danmaku rate."""
    return show_key(show_id, "rl", user_id)


def muted(show_id: str) -> str:
    """Hash user id → mute end (ms)."""
    return show_key(show_id, "muted")


def banned(show_id: str) -> str:
    """Set of banned user ids."""
    return show_key(show_id, "banned")


def pinned(show_id: str) -> str:
    """Hash of the pinned chat message: id, uid, name, text."""
    return show_key(show_id, "pinned")


def audit(show_id: str) -> str:
    """Stream of moderation actions: action, by, by_name, target, ts, …"""
    return show_key(show_id, "audit")


def presence(show_id: str) -> str:
    """Hash node id → "count:last_seen_ms" of each node serving the show."""
    return show_key(show_id, "presence")


def presence_users(show_id: str, node_id: str) -> str:
    """Hash user id → name of the users connected to one node (expires if the node dies)."""
    return show_key(show_id, "users", node_id)


def peak(show_id: str) -> str:
    """Peak concurrent viewers (string int)."""
    return show_key(show_id, "peak")


# Media (origin directory, issue 11).


def media_origin(show_id: str) -> str:
    """Hash of the show's origin (node, process, pipe, epoch, url, since), leased (media/origin.py)."""
    return show_key(show_id, "media", "origin")


def media_stream_origin(media_id: str) -> str:
    """The origin hash of one publisher stream (issue 20): the host's is :func:`media_origin`."""
    from media.streams import split

    show_id, stream = split(media_id)
    if stream == "main":
        return media_origin(show_id)
    return show_key(show_id, "media", "origin", stream)

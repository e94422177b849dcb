"""Prometheus metrics of the real-time layer (module-level, prefixes ``liveshop_ws_`` and ``liveshop_chat_``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WS_CONNECTIONS = Gauge("liveshop_ws_connections", "open WebSocket connections on this node")
WS_CONNECTS = Counter("liveshop_ws_connects_total", "WebSocket connections accepted", ["codec"])
WS_CLOSES = Counter(
    "liveshop_ws_closes_total", "WebSocket connections closed by the server", ["code"]
)
WS_MESSAGES_IN = Counter("liveshop_ws_messages_in_total", "client messages received", ["type"])
WS_FRAMES_OUT = Counter("liveshop_ws_frames_out_total", "frames written to clients")
WS_EVENTS_OUT = Counter(
    "liveshop_ws_events_out_total", "events delivered to clients (frames × events)"
)
WS_ERRORS = Counter("liveshop_ws_errors_total", "error replies sent", ["code"])
WS_DROPPED = Counter("liveshop_ws_dropped_total", "chat events dropped for slow viewers")
WS_SLOW_CLOSED = Counter("liveshop_ws_slow_closed_total", "connections closed 1013 as stuck")
WS_BATCH_EVENTS = Histogram(
    "liveshop_ws_batch_events", "events per fan-out batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)  # fmt: skip
WS_FANOUT_SECONDS = Histogram(
    "liveshop_ws_fanout_seconds", "time from an event reaching the node to its batch written to every local viewer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5),
)  # fmt: skip
WS_WRITE_SECONDS = Histogram(
    "liveshop_ws_write_seconds", "time to write one batch to every local viewer of a show",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)  # fmt: skip
CHAT_MESSAGES = Counter("liveshop_chat_messages_total", "danmaku accepted on this node")
CHAT_REJECTED = Counter("liveshop_chat_rejected_total", "danmaku refused", ["reason"])
CHAT_RATE_LIMITED = Counter(
    "liveshop_chat_rate_limited_total", "danmaku refused by the per-user rate limit"
)

"""The WebSocket edge: what a viewer's socket touches, and nothing a service decides.

- :mod:`.gateway`: ``GET /ws/{show}`` — subprotocols, auth, per-connection limits, close codes,
  the welcome, and dispatch of every frame through the protocol registry (:mod:`server.protocol`);
- :mod:`.hub`: the per-show hub on this node — one broker subscription per show, batching,
  encode once, fan-out; after a pub/sub gap it resyncs through the snapshot;
- :mod:`.connection`: one viewer's bounded send queue and the shared, lazily encoded batch;
- :mod:`.snapshot`: the join snapshot — the services' reads for the welcome, in one pipeline;
- :mod:`.guard`: the inbound frame mask check; :mod:`.metrics`: the ``liveshop_ws_*`` and
  ``liveshop_chat_*`` Prometheus series.

It owns no Redis key: services read and write their own (:mod:`server.realtime`,
:mod:`server.commerce`) and reach viewers through the broker (:mod:`server.redis.broker`).
"""

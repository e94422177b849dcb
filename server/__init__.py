"""liveshop server: the aiohttp application, its WebSocket edge and its services over Redis.

The house (docs/architecture.md): the foundation at the top level (`app`, `config`, `errors`,
`auth`, `access`, `shows`, HTTP parts such as `media_api`); `ws/` the WebSocket edge;
`protocol/` the command and event registry; `realtime/` and `commerce/` the services;
`insight/` what hosts learn from a show; `redis/` connections, keys, Lua and the broker.
"""

__version__ = "0.1.0"

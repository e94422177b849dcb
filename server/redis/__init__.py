"""Everything that knows it is talking to Redis, apart from the services' own commands.

- :mod:`.store`: connecting (standalone, unix socket, Cluster) and the pool;
- :mod:`.embedded`: the private ``redis-server`` child used when no ``--redis-url`` is given;
- :mod:`.keys`: every key name (per-show keys carry the hash tag ``{show:ID}``);
- :mod:`.lua`: the one way to declare, load and call a Lua script (and give it the app clock);
- :mod:`.broker` (+ ``broker.lua``): publish/subscribe and the envelope, per show and node-wide.

Named ``server.redis``; inside the package ``import redis`` still means redis-py (absolute
imports), so the two never mix.
"""

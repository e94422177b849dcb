"""Connecting to Redis (standalone, unix socket or Cluster). Lua scripts: :mod:`server.redis.lua`."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ..errors import ConfigError

Redis = aioredis.Redis | RedisCluster


def is_cluster_url(url: str) -> bool:
    return url.startswith(("redis+cluster://", "rediss+cluster://"))


async def connect(
    url: str,
    cluster: bool = False,
    max_connections: int = 256,
    pool_timeout_s: float = 20.0,
    **options: Any,
) -> Redis:
    """Connect and PING, or raise ConfigError with one clear line."""
    options.setdefault("decode_responses", True)
    options.setdefault("socket_connect_timeout", 3)
    client: Redis
    try:
        if cluster or is_cluster_url(url):
            plain = url.replace("+cluster", "", 1)
            client = RedisCluster.from_url(plain, **options)
            await client.initialize()
        else:
            options.setdefault("health_check_interval", 30)
            # redis-py's default pool raises MaxConnectionsError past its cap; a burst of
            # joins or buys must queue for a connection instead of failing.
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=pool_timeout_s, **options
            )
            client = aioredis.Redis.from_pool(pool)  # the client owns (and closes) the pool
        await client.ping()
    except (aioredis.RedisError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach Redis at {url}: {exc}") from None
    return client


async def server_version(client: Redis) -> str:
    info = await client.info("server")
    if isinstance(client, RedisCluster):
        # Cluster INFO answers per node: {node: {...}}; any node's version will do.
        first = next(iter(info.values()))
        info = first if isinstance(first, dict) else info
    return str(info.get("redis_version", "unknown"))

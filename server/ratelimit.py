"""Local (in-process) token buckets, for per-connection and per-IP limits that need no Redis round trip.

Per-user chat limits are enforced in Redis by ``chat.lua`` (same algorithm, shared by all nodes).
"""

from __future__ import annotations

import time


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class KeyedLimiter:
    """One :class:`TokenBucket` per key (a client IP); ``rate`` 0 means no limit.

    Idle buckets (refilled to full) are dropped when the table grows past ``max_keys``, so a
    scan from many addresses cannot grow memory without bound.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 50_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.max_keys = max_keys
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> bool:
        if self.rate <= 0:
            return True
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self._prune()
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take()

    def _prune(self) -> None:
        now = time.monotonic()
        full = [
            key
            for key, bucket in self.buckets.items()
            if bucket.tokens + (now - bucket.stamp) * bucket.rate >= bucket.burst
        ]
        for key in full or list(self.buckets)[: self.max_keys // 2]:
            del self.buckets[key]

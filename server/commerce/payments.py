"""The payment provider interface and the shipped simulated provider.

A provider charges an amount under an idempotency key: charging the same key twice returns
the first result and never moves money twice. The checkout uses the reservation id as that key,
so however often a buyer retries, a reservation is charged at most once. A real provider
(Stripe, Adyen, …) plugs in by implementing :class:`PaymentProvider` and being set as
``app[PAYMENTS]``.
"""

from __future__ import annotations

import abc
import asyncio
import json
import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from aiohttp import web

from ..appkeys import REDIS, SETTINGS
from ..redis.store import Redis

SIM_CHARGES = "liveshop:simpay:charges"  # hash idempotency key → ChargeResult JSON
SIM_ATTEMPTS = "liveshop:simpay:attempts"  # hash idempotency key → charge calls seen


@dataclass(frozen=True)
class ChargeResult:
    ok: bool
    charge_id: str
    reason: str = ""


class PaymentProvider(abc.ABC):
    """Charges money; must be idempotent per ``idempotency_key``."""

    @abc.abstractmethod
    async def charge(
        self, *, idempotency_key: str, amount: int, currency: str, description: str
    ) -> ChargeResult:
        """Charge ``amount`` minor units once for this key; a repeat returns the first result."""

    @abc.abstractmethod
    async def lookup(self, idempotency_key: str) -> ChargeResult | None:
        """The result of an earlier charge under this key, or None if none was made."""


class SimulatedProvider(PaymentProvider):
    """A provider that waits ``latency_ms`` and fails a ``failure_rate`` share of charges.

    Charges are kept in Redis so every node sees the same ledger; ``charges_made`` lets tests
    prove a retry never charged twice.
    """

    def __init__(self, redis: Redis, latency_ms: int = 50, failure_rate: float = 0.0) -> None:
        self.redis = redis
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate

    async def charge(
        self, *, idempotency_key: str, amount: int, currency: str, description: str
    ) -> ChargeResult:
        await self.redis.hincrby(SIM_ATTEMPTS, idempotency_key, 1)
        earlier = await self.lookup(idempotency_key)
        if earlier:
            return earlier
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        ok = random.random() >= self.failure_rate
        result = ChargeResult(ok, "ch_" + secrets.token_hex(8), "" if ok else "card_declined")
        if not await self.redis.hsetnx(SIM_CHARGES, idempotency_key, json.dumps(asdict(result))):
            return await self.lookup(idempotency_key) or result  # a concurrent call won
        return result

    async def lookup(self, idempotency_key: str) -> ChargeResult | None:
        raw = await self.redis.hget(SIM_CHARGES, idempotency_key)
        return ChargeResult(**json.loads(raw)) if raw else None

    async def charges_made(self, idempotency_key: str) -> int:
        """1 if money moved for this key, else 0 (a failed charge moves none)."""
        earlier = await self.lookup(idempotency_key)
        return int(bool(earlier and earlier.ok))


PAYMENTS = web.AppKey("payments", PaymentProvider)


async def payments_ctx(app: web.Application) -> AsyncIterator[None]:
    if PAYMENTS not in app:
        settings = app[SETTINGS]
        app[PAYMENTS] = SimulatedProvider(
            app[REDIS], settings.payment_latency_ms, settings.payment_failure_rate
        )
    yield

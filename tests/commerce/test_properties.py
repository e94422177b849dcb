"""Property-based interleavings of buy / pay / expire / cancel keep the sale's invariants.

Each example runs groups of operations; the operations of one group run concurrently against
the real Redis scripts. After every group: left + reserved + sold == quantity, nothing below
zero, every user within the limit, paid == sold, each unit released at most once, and a
repeated buy key always answers its first outcome.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.appkeys import REDIS
from server.auth import Claims
from server.commerce import keys as ck
from server.commerce.orders import cancel, pay
from server.commerce.payments import PAYMENTS, ChargeResult, SimulatedProvider
from server.commerce.products import create_product
from server.commerce.sales import buy, create_sale, get_sale
from server.commerce.scripts import ORDER
from server.config import Settings
from server.errors import ApiError
from server.redis import keys as base

QUANTITY, LIMIT, USERS = 3, 2, 4


class DecliningProvider(SimulatedProvider):
    """The simulated provider, declining exactly the reservations listed in ``declined``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.declined: set[str] = set()

    async def charge(
        self, *, idempotency_key: str, amount: int, currency: str, description: str
    ) -> ChargeResult:
        self.failure_rate = 1.0 if idempotency_key in self.declined else 0.0
        return await super().charge(
            idempotency_key=idempotency_key,
            amount=amount,
            currency=currency,
            description=description,
        )


op = st.one_of(
    st.tuples(st.just("buy"), st.integers(0, USERS - 1), st.integers(0, 3)),
    st.tuples(st.just("pay"), st.integers(0, 7), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("cancel"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("expire"), st.integers(0, 7)),
)
plans = st.lists(st.lists(op, min_size=1, max_size=5), min_size=1, max_size=7)


@asynccontextmanager
async def started_app(redis_url: str, data_dir: Path) -> AsyncIterator[web.Application]:
    """The real app (``create_app``, started without a listening socket), whose payment
    provider declines the reservations a plan says to."""
    settings = Settings(
        redis_url=redis_url, secret="test-secret", payment_latency_ms=0, data_dir=data_dir
    )
    app = create_app(settings)
    provider = DecliningProvider(None, 0, 0.0)  # type: ignore[arg-type]
    app[PAYMENTS] = provider  # payments_ctx keeps a provider already there

    async def bind_provider(app: web.Application) -> AsyncIterator[None]:
        provider.redis = app[REDIS]  # the app's own connection, made at startup
        yield

    app.cleanup_ctx.append(bind_provider)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        yield app
    finally:
        await runner.cleanup()


async def check_invariants(app: web.Application, show_id: str, sale_id: str) -> None:
    sale = await get_sale(app, sale_id)
    assert sale["left"] >= 0 and sale["reserved"] >= 0 and sale["sold"] >= 0
    assert sale["left"] + sale["reserved"] + sale["sold"] == QUANTITY
    orders = [json.loads(v) for v in (await app[REDIS].hgetall(ck.reservations(show_id))).values()]
    live = [o for o in orders if o["status"] in ("reserved", "paying")]
    paid = [o for o in orders if o["status"] == "paid"]
    assert len(live) == sale["reserved"] and len(paid) == sale["sold"]
    holding = Counter(o["user_id"] for o in live + paid)
    assert all(units <= LIMIT for units in holding.values())
    counts = await app[REDIS].hgetall(ck.sale_users(show_id))
    assert {k.split("|")[1]: int(v) for k, v in counts.items() if int(v)} == dict(holding)
    releases: Counter[str] = Counter()
    for _, data in await app[REDIS].xrange(base.orders_stream(show_id)):
        if data["type"] in ("expired", "cancelled", "failed"):
            releases[json.loads(data["order"])["id"]] += 1
    assert all(n == 1 for n in releases.values())
    assert not {o["id"] for o in paid} & set(releases)


async def scenario(app: web.Application, plan: list[list[tuple[Any, ...]]]) -> None:
    show_id = "prop" + secrets.token_hex(5)
    product = await create_product(app, show_id, {"title": "P", "price": 100, "stock": QUANTITY})
    sale_id = (
        await create_sale(
            app,
            show_id,
            {
                "product_id": product["id"],
                "quantity": QUANTITY,
                "price": 50,
                "per_user_limit": LIMIT,
            },
        )
    )["id"]
    users = [Claims(f"u{i}", f"User {i}", "viewer", show_id, 2**40) for i in range(USERS)]
    staff = Claims("host", "Host", "host", show_id, 2**40)
    rids: list[tuple[str, int]] = []  # (reservation id, owner index)
    first: dict[tuple[int, int], dict[str, Any]] = {}

    async def run(step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "buy":
            _, user, key = step
            reply = await buy(app, users[user], sale_id, f"k{key}")
            assert first.setdefault((user, key), reply) == reply
            if reply["outcome"] == "reserved" and (reply["reservation_id"], user) not in rids:
                rids.append((reply["reservation_id"], user))
            return
        if not rids:
            return
        rid, owner = rids[step[1] % len(rids)]
        try:
            if kind == "pay":
                if step[3]:
                    app[PAYMENTS].declined.add(rid)  # type: ignore[attr-defined]
                await pay(app, users[owner], rid, f"p{step[2]}", "")
            elif kind == "cancel":
                await cancel(app, staff if step[2] else users[owner], rid)
            else:
                await app[REDIS].zadd(ck.expiries(show_id), {rid: 0})
                await ORDER(app, ck.order_script_keys(show_id), ["sweep", 100])
        except ApiError as exc:
            assert exc.status in (403, 409), exc.to_dict()

    for group in plan:
        await asyncio.gather(*(run(step) for step in group))
        await check_invariants(app, show_id, sale_id)


def test_interleavings_keep_invariants(redis_url: str, tmp_path: Path) -> None:
    """One started app for all examples (each on its own show), on one event loop."""
    loop = asyncio.new_event_loop()
    apps = started_app(redis_url, tmp_path / "data")
    app = loop.run_until_complete(apps.__aenter__())
    try:

        @settings(max_examples=60, deadline=None)
        @given(plan=plans)
        def check(plan: list[list[tuple[Any, ...]]]) -> None:
            loop.run_until_complete(scenario(app, plan))

        check()
    finally:
        loop.run_until_complete(apps.__aexit__(None, None, None))
        loop.close()

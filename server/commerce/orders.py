"""Checkout and orders.

The reservation (``{show}:reservations``) is the authoritative state, changed only by
``order.lua``. Each change appends its snapshot to the show's order stream; the ``orders``
consumer group (one consumer per node) folds the stream into order records that the order
endpoints read. Paying runs ``pay_begin`` (reserved → paying, one winner), charges the
provider under the reservation id, then ``pay_finish`` (→ paid, or failed which releases the
unit). A payment retry with the same key answers the stored result; with any key a paid order
is never charged again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.exceptions import ResponseError

from .. import insight
from ..appkeys import REDIS
from ..auth import STAFF, Claims, authenticate
from ..errors import ApiError, conflict, forbidden, not_found, read_json
from ..insight import alerts
from ..logs import retry_failed
from ..realtime import pk
from ..redis import keys as base
from ..redis.broker import publish
from ..shows import get_show
from . import fields
from . import keys as ck
from .activity import active_shows
from .payments import PAYMENTS
from .scripts import ORDER, ORDERS_APPLY

log = logging.getLogger("liveshop.orders")

GROUP = "orders"
READ_COUNT = 2000
PUBLIC_FIELDS = (
    "id", "sale_id", "product_id", "title", "user_id", "name", "key", "quantity", "price", "amount",
    "currency", "status", "created_at", "expires_at", "paid_at", "closed_at", "coupon_id", "discount",
    "charge_id", "failure",
)  # fmt: skip


def public(order: dict[str, Any]) -> dict[str, Any]:
    """An order record for clients: ``id`` is the reservation id (also ``reservation_id``)."""
    out = {name: order[name] for name in PUBLIC_FIELDS if name in order}
    out["reservation_id"] = out["order_id"] = order["id"]
    out["idempotency_key"] = order.get("key")
    return out


async def run_order_op(
    app: web.Application, show_id: str, *args: Any
) -> tuple[str, dict[str, Any] | None]:
    code, raw = await ORDER(app, ck.order_script_keys(show_id), args)
    return code, (json.loads(raw) if raw else None)


# -- the consumer group --------------------------------------------------------------------


class OrderConsumer:
    """This node's consumer in the ``orders`` group of every commerce show."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.name = "node-" + secrets.token_hex(4)
        self.groups: set[str] = set()
        self.locks: dict[str, asyncio.Lock] = {}
        self.last_claim = 0.0
        self.stopped = False

    async def ensure_group(self, show_id: str) -> None:
        if show_id in self.groups:
            return
        try:
            await self.app[REDIS].xgroup_create(
                base.orders_stream(show_id), GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.groups.add(show_id)

    async def consume(self, show_id: str, claim_idle_ms: int = 0) -> int:
        """Fold every new (and, with ``claim_idle_ms``, every abandoned) entry into records."""
        lock = self.locks.setdefault(show_id, asyncio.Lock())
        async with lock:
            await self.ensure_group(show_id)
            redis = self.app[REDIS]
            stream = base.orders_stream(show_id)
            total = 0
            if claim_idle_ms:
                _, claimed, *_ = await redis.xautoclaim(
                    stream, GROUP, self.name, claim_idle_ms, "0-0", count=READ_COUNT
                )
                total += await self._apply(show_id, claimed)
            while True:
                reply = await redis.xreadgroup(GROUP, self.name, {stream: ">"}, count=READ_COUNT)
                entries = reply[0][1] if reply else []
                if not entries:
                    return total
                total += await self._apply(show_id, entries)

    async def _apply(self, show_id: str, entries: list[tuple[str, dict[str, str]]]) -> int:
        args: list[Any] = []
        ids = []
        script_keys = [ck.order_records(show_id), ck.order_index(show_id)]
        sale_key_at: dict[str, int] = {}  # sale id → its index's position in KEYS (1-based)
        for entry_id, data in entries:
            ids.append(entry_id)
            if not data or "order" not in data:
                continue
            order = json.loads(data["order"])
            sale_id = order["sale_id"]
            if sale_id not in sale_key_at:
                script_keys.append(ck.sale_order_index(show_id, sale_id))
                sale_key_at[sale_id] = len(script_keys)
            args += (
                order["id"],
                order["v"],
                data["order"],
                order["created_at"],
                sale_key_at[sale_id],
            )
        if args:
            await ORDERS_APPLY(self.app, script_keys, args)
        if ids:
            await self.app[REDIS].xack(base.orders_stream(show_id), GROUP, *ids)
        return len(ids)

    async def catch_up(self, show_id: str, wait_s: float = 2.0) -> None:
        """Read-your-writes: apply what is new, then wait briefly for other nodes' in-flight entries."""
        await self.consume(show_id)
        deadline = time.monotonic() + wait_s
        redis = self.app[REDIS]
        while time.monotonic() < deadline:
            pending = await redis.xpending(base.orders_stream(show_id), GROUP)
            if not pending or not pending.get("pending"):
                return
            await asyncio.sleep(0.02)
            await self.consume(show_id, claim_idle_ms=1000)

    async def loop(self) -> None:
        while (
            not self.stopped
        ):  # a flag too: a cancel swallowed inside a Redis call must not keep us alive
            try:
                shows = await active_shows(self.app)
                if time.monotonic() - self.last_claim > 10:
                    self.last_claim = time.monotonic()
                    for show_id in shows:
                        await self.consume(show_id, claim_idle_ms=30_000)
                else:
                    await self.poll(shows)
            except asyncio.CancelledError:
                raise
            except Exception:
                retry_failed(log, "order consumer pass failed")
                await asyncio.sleep(1)
            await asyncio.sleep(0.1)

    async def poll(self, shows: list[str]) -> None:
        """Read every show's new entries in one pipeline (a node serves many idle shows)."""
        for show_id in shows:
            await self.ensure_group(show_id)
        async with self.app[REDIS].pipeline(transaction=False) as pipe:
            for show_id in shows:
                stream = base.orders_stream(show_id)
                pipe.xreadgroup(GROUP, self.name, {stream: ">"}, count=READ_COUNT)
            replies = await pipe.execute(raise_on_error=False)
        for show_id, reply in zip(shows, replies, strict=True):
            if isinstance(reply, ResponseError):
                if "NOGROUP" not in str(reply):
                    raise reply
                self.groups.discard(show_id)  # the stream went away: create it again next pass
                continue
            entries = reply[0][1] if reply else []
            if entries:
                # Versions make the order of application free; the lock is catch_up's.
                async with self.locks.setdefault(show_id, asyncio.Lock()):
                    await self._apply(show_id, entries)
            if len(entries) == READ_COUNT:
                await self.consume(show_id)


CONSUMER = web.AppKey("order_consumer", OrderConsumer)


async def consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    app[CONSUMER] = consumer = OrderConsumer(app)
    task = asyncio.create_task(consumer.loop(), name="order-consumer")
    yield
    consumer.stopped = True
    task.cancel()
    await asyncio.wait([task], timeout=3)


# -- reading orders ------------------------------------------------------------------------


async def read_order(app: web.Application, order_id: str) -> dict[str, Any]:
    """The order record (from the consumer group's projection, caught up), or 404."""
    show_id = ck.show_of(order_id, "r")
    redis = app[REDIS]
    raw = await redis.hget(ck.order_records(show_id), order_id)
    truth = await redis.hget(ck.reservations(show_id), order_id)
    if truth is None:
        raise not_found("order_not_found", f"no order {order_id!r}")
    if raw is None or json.loads(raw)["v"] < json.loads(truth)["v"]:
        await app[CONSUMER].catch_up(show_id, wait_s=0.5)
        raw = await redis.hget(ck.order_records(show_id), order_id) or truth
    return json.loads(raw)


async def handle_get(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    claims = await authenticate(request, ck.show_of(order_id, "r"))
    order = await read_order(request.app, order_id)
    if order["user_id"] != claims.user_id and not claims.is_staff:
        raise forbidden("this order belongs to another user")
    return web.json_response({"order": public(order)})


async def handle_list(request: web.Request) -> web.Response:
    """All orders of the show, oldest first, ``limit`` per page with an opaque ``cursor``."""
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    await authenticate(request, show_id, STAFF)
    query = dict(request.query)
    try:
        limit = fields.integer({"limit": int(query.get("limit", 1000))}, "limit", 1, 5000)
        offset = int(query.get("cursor") or 0)
        if offset < 0:
            raise ValueError("negative cursor")
    except ValueError:
        raise ApiError(400, "bad_field", "limit and cursor must be integers") from None
    sale_id = query.get("sale_id")
    index = ck.order_index(show_id)
    if sale_id:  # filtered before paging: the sale's own index gives pages, cursor and total
        if ck.show_of(sale_id, "s") != show_id:
            raise not_found("sale_not_found", f"no sale {sale_id!r} in this show")
        index = ck.sale_order_index(show_id, sale_id)
    await request.app[CONSUMER].catch_up(show_id)
    redis = request.app[REDIS]
    if sale_id:
        await _build_sale_indexes(request.app, show_id)
    ids = await redis.zrange(index, offset, offset + limit - 1)
    rows = await redis.hmget(ck.order_records(show_id), ids) if ids else []
    orders = [public(json.loads(raw)) for raw in rows if raw]
    total = await redis.zcard(index)
    next_cursor = str(offset + len(ids)) if offset + len(ids) < total else None
    return web.json_response({"orders": orders, "next_cursor": next_cursor, "total": total})


async def _build_sale_indexes(app: web.Application, show_id: str) -> None:
    """Once per show: index by sale the orders recorded before per-sale indexes existed.

    The consumer adds every new order to its sale's index; this pass (idempotent: ZADD NX, so it
    may race the consumer) covers records that were folded by an older version.
    """
    redis = app[REDIS]
    flag = ck.sale_order_indexes_built(show_id)
    if await redis.exists(flag):
        return
    pipe = redis.pipeline(transaction=False)
    async for order_id, raw in redis.hscan_iter(ck.order_records(show_id), count=1000):
        order = json.loads(raw)
        pipe.zadd(
            ck.sale_order_index(show_id, order["sale_id"]), {order_id: order["created_at"]}, nx=True
        )
        if len(pipe) >= 1000:
            await pipe.execute()
    await pipe.execute()
    await redis.set(flag, "1")


# -- paying and cancelling -----------------------------------------------------------------


async def pay(
    app: web.Application, claims: Claims, order_id: str, key: str, coupon_id: str
) -> dict[str, Any]:
    """Pay a reservation; returns the reply body. Never charges a reservation twice."""
    show_id = ck.show_of(order_id, "r")
    if show_id != claims.show_id:
        raise forbidden("token is for another show")
    deadline = time.monotonic() + 10
    while True:
        code, order = await run_order_op(
            app, show_id, "pay_begin", order_id, claims.user_id, key, coupon_id
        )
        if code != "in_progress" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)  # another attempt is charging this reservation: wait for its end
    if code == "not_found":
        raise not_found("order_not_found", f"no order {order_id!r}")
    if code == "forbidden":
        raise forbidden("this order belongs to another user")
    if code in ("replay", "already_paid"):
        assert order is not None
        return {"status": order["status"], "order": public(order)}
    if code == "in_progress":
        raise conflict(
            "payment_in_progress", "a payment for this order is still running; retry shortly"
        )
    if code.startswith("coupon_"):
        raise conflict(
            code, f"the coupon cannot be used ({code.removeprefix('coupon_').replace('_', ' ')})"
        )
    if code == "not_payable":
        assert order is not None
        raise conflict(
            "order_not_payable", f"the order is {order['status']}", order_status=order["status"]
        )
    assert code == "charge" and order is not None
    return await charge(app, show_id, order, key)


async def charge(
    app: web.Application, show_id: str, order: dict[str, Any], key: str
) -> dict[str, Any]:
    """Charge a ``paying`` order under its reservation id and record the result."""
    try:
        result = await app[PAYMENTS].charge(
            idempotency_key=order["id"],
            amount=order["amount"],
            currency=order["currency"],
            description=order["title"],
        )
        ok, charge_id, reason = result.ok, result.charge_id, result.reason
    except Exception as exc:  # provider unreachable: the sweeper's lookup settles it later
        log.warning("payment provider error for %s: %s", order["id"], exc)
        raise ApiError(
            502,
            "payment_unavailable",
            "the payment provider did not answer; retry with the same key",
        ) from None
    code, final = await run_order_op(
        app, show_id, "pay_finish", order["id"], key, "1" if ok else "0", charge_id, reason
    )
    assert final is not None
    if code == "paid":
        await announce_paid(app, show_id, final)
    elif final["status"] == "failed":
        await alerts.payment_failed(app, show_id, int(time.time() * 1000))
    return {"status": final["status"], "order": public(final)}


async def announce_paid(app: web.Application, show_id: str, order: dict[str, Any]) -> None:
    """Social proof: "Alice just bought …" with the units left."""
    await insight.paid(app, show_id, order)
    await pk.add_points(app, show_id, gmv=int(order["amount"]))
    left = await app[REDIS].hget(ck.sales(show_id), f"{order['sale_id']}:left")
    await publish(
        app,
        show_id,
        {
            "type": "order.paid",
            "buyer": order["name"],
            "product_id": order["product_id"],
            "product": order["title"],
            "sale_id": order["sale_id"],
            "left": int(left or 0),
            "text": f"{order['name']} just bought {order['title']}",
        },
    )


async def settle_stale_payment(app: web.Application, show_id: str, order_id: str) -> None:
    """A ``paying`` order whose node died: finish it from the provider's record (none → failed)."""
    raw = await app[REDIS].hget(ck.reservations(show_id), order_id)
    if not raw:
        return
    order = json.loads(raw)
    if order["status"] != "paying":
        return
    result = await app[PAYMENTS].lookup(order_id)
    ok = bool(result and result.ok)
    code, final = await run_order_op(
        app, show_id, "pay_finish", order_id, order["pay_key"], "1" if ok else "0",
        result.charge_id if result else "", result.reason if result else "abandoned",
    )  # fmt: skip
    if code == "paid" and final:
        await announce_paid(app, show_id, final)


async def handle_pay(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    claims = await authenticate(request, ck.show_of(order_id, "r"))
    body = await read_json(request)
    key = fields.idempotency_key(body)
    coupon_id = body.get("coupon_id") or ""
    if coupon_id:
        ck.show_of(str(coupon_id), "c")
    return web.json_response(await pay(request.app, claims, order_id, key, str(coupon_id)))


async def cancel(app: web.Application, claims: Claims, order_id: str) -> dict[str, Any]:
    """Cancel a live reservation (its buyer or staff); the unit returns to the sale."""
    show_id = ck.show_of(order_id, "r")
    if show_id != claims.show_id:
        raise forbidden("token is for another show")
    code, order = await run_order_op(
        app, show_id, "cancel", order_id, "" if claims.is_staff else claims.user_id
    )
    if code == "not_found":
        raise not_found("order_not_found", f"no order {order_id!r}")
    if code == "forbidden":
        raise forbidden("this order belongs to another user")
    assert order is not None
    if code == "not_cancellable":
        raise conflict(
            "order_not_cancellable", f"the order is {order['status']}", order_status=order["status"]
        )
    return {"status": order["status"], "order": public(order)}


async def handle_cancel(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    claims = await authenticate(request, ck.show_of(order_id, "r"))
    return web.json_response(await cancel(request.app, claims, order_id))


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(consumer_ctx)
    app.router.add_get("/api/orders/{order_id}", handle_get)
    app.router.add_post("/api/orders/{order_id}/pay", handle_pay)
    app.router.add_post("/api/orders/{order_id}/cancel", handle_cancel)
    app.router.add_get("/api/shows/{show_id}/orders", handle_list)

"""Flash sales and the buy path.

A sale lives in the show's ``{show}:sales`` hash (``SALE:field``). Buying goes through a
per-show micro-batcher: attempts arriving on this node while one script call is in flight are
queued and decided together by the next ``buy.lua`` call (one EVALSHA for up to
``MAX_BATCH`` attempts). Inside the script attempts are decided one after the other, so each is
as atomic as if it had its own call, and the batch size grows with the load by itself.

Once a sale is sold out, the node answers further attempts itself (:class:`SoldOut`): a
``sold_out`` in a batch result makes it subscribe to the show's events and snapshot who holds
units of the sale; from then on an attempt by anyone who holds no unit is answered ``sold_out``
without a Redis round trip (its key is still recorded, in the background, with HSETNX), until the
stock-return event (``sale.stock`` with units left, after an expiry, cancel or failed payment)
or ``sale.ended`` clears the flag. Holders still go to Redis: their keys may have answered
``reserved`` and must replay it. See docs/protocol.md "Buy outcomes and idempotency".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgpack
from aiohttp import web
from msgspec import Meta

from .. import auth, insight
from ..access import client_ip, ws_client_ip
from ..appkeys import REDIS, SETTINGS
from ..auth import STAFF, Claims, authenticate
from ..clock import now_ms
from ..errors import ApiError, bad_request, conflict, not_found, read_json
from ..insight import alerts
from ..protocol import Command, Message, register
from ..redis.broker import Envelope, Subscriber, publish
from ..shows import get_show
from . import fields
from . import keys as ck
from .activity import touch
from .fields import COMMERCE_COMMANDS
from .products import pinned_products
from .scripts import BUY, SALE_CREATE, SOLDOUT_RECORD

log = logging.getLogger("liveshop.sales")

MAX_BATCH = 1000
IN_FLIGHT = 2  # script calls in flight per show and node: Python prepares one batch while Redis runs the other
IDLE_EXIT_S = 30.0
SALE_FIELDS = (
    "product", "title", "currency", "price", "list_price", "qty", "left", "reserved", "sold",
    "limit", "start", "end", "status", "created",
)  # fmt: skip
INT_FIELDS = {
    "price",
    "list_price",
    "qty",
    "left",
    "reserved",
    "sold",
    "limit",
    "start",
    "end",
    "created",
}
SOLDOUT_RECHECK_S = 5.0  # a flag older than this lets one attempt through to Redis (lost events)
RECORD_BATCH = 5000


def sale_status(sale: dict[str, Any], now_ms: int) -> str:
    """scheduled (countdown), live or ended."""
    if sale["status"] == "ended" or now_ms >= sale["ends_at"]:
        return "ended"
    return "scheduled" if now_ms < sale["starts_at"] else "live"


def _view(app: web.Application, sale_id: str, raw: list[str | None]) -> dict[str, Any] | None:
    if raw[0] is None:
        return None
    f = {
        name: (int(v) if name in INT_FIELDS and v is not None else v)
        for name, v in zip(SALE_FIELDS, raw, strict=True)
    }
    sale = {
        "id": sale_id,
        "show_id": ck.show_of(sale_id, "s"),
        "product_id": f["product"],
        "title": f["title"],
        "price": f["price"],
        "list_price": f["list_price"],
        "currency": f["currency"],
        "quantity": f["qty"],
        "left": f["left"],
        "reserved": f["reserved"],
        "sold": f["sold"],
        "per_user_limit": f["limit"],
        "starts_at": f["start"],
        "ends_at": f["end"],
        "created_at": f["created"],
        "status": f["status"],
    }
    now = now_ms(app)
    sale["status"] = sale_status(sale, now)
    sale["now"] = now
    return sale


async def get_sale(app: web.Application, sale_id: str) -> dict[str, Any]:
    """The sale with live counters (quantity = left + reserved + sold), or 404 ``sale_not_found``."""
    show_id = ck.show_of(sale_id, "s")
    raw = await app[REDIS].hmget(ck.sales(show_id), [f"{sale_id}:{name}" for name in SALE_FIELDS])
    sale = _view(app, sale_id, raw)
    if sale is None:
        raise not_found("sale_not_found", f"no sale {sale_id!r}")
    return sale


async def list_sales(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    count = int(await app[REDIS].hget(ck.seq(show_id), "sale") or 0)
    return (await sales_of(app, {show_id: count}))[show_id]


async def sales_of(app: web.Application, counts: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """The sales of several shows, given each show's sale count (its ``sale`` sequence), in one pipeline."""
    ids = {
        show_id: [f"{show_id}.s{n}" for n in range(1, count + 1)]
        for show_id, count in counts.items()
    }
    if not any(ids.values()):
        return {show_id: [] for show_id in ids}
    async with app[REDIS].pipeline(transaction=False) as pipe:
        for show_id, sale_ids in ids.items():
            for sale_id in sale_ids:
                pipe.hmget(ck.sales(show_id), [f"{sale_id}:{name}" for name in SALE_FIELDS])
        rows = iter(await pipe.execute())
    return {
        show_id: [sale for sale_id in sale_ids if (sale := _view(app, sale_id, next(rows)))]
        for show_id, sale_ids in ids.items()
    }


async def create_sale(app: web.Application, show_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Validate, then take the quantity from the product's stock and create the sale atomically."""
    product_id = body.get("product_id")
    if not isinstance(product_id, str):
        raise bad_request("bad_field", "product_id is required", field="product_id")
    if ck.show_of(product_id, "p") != show_id:
        raise not_found("product_not_found", f"no product {product_id!r} in this show")
    quantity = fields.integer(body, "quantity", 1, 1_000_000)
    price = fields.integer(body, "price", 1, 100_000_000_00)
    limit = fields.integer(body, "per_user_limit", 1, 1000, default=1)
    starts_in = fields.integer(body, "starts_in_s", 0, 24 * 3600, default=0)
    duration = fields.integer(body, "duration_s", 1, 24 * 3600, default=300)
    result = await SALE_CREATE(
        app,
        [ck.products(show_id), ck.stock(show_id), ck.sales(show_id), ck.seq(show_id)],
        [show_id, product_id, quantity, price, limit, starts_in * 1000, duration * 1000],
    )
    if result[0] == "unknown_product":
        raise not_found("product_not_found", f"no product {product_id!r}")
    if result[0] == "out_of_stock":
        raise conflict("out_of_stock", "the product has no stock for a sale")
    if result[0] == "insufficient_stock":
        raise conflict(
            "insufficient_stock", f"the product has only {result[1]} in stock", stock=int(result[1])
        )
    await touch(app, show_id)
    sale = await get_sale(app, result[1])
    if sale["status"] == "scheduled":
        await publish(app, show_id, countdown_event(sale))
    else:
        await publish(app, show_id, started_event(sale))
    return sale


def countdown_event(sale: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "sale.countdown",
        "sale_id": sale["id"],
        "product_id": sale["product_id"],
        "title": sale["title"],
        "price": sale["price"],
        "currency": sale["currency"],
        "quantity": sale["quantity"],
        "starts_at": sale["starts_at"],
        "seconds_left": max(0, round((sale["starts_at"] - sale["now"]) / 1000)),
    }


def started_event(sale: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "sale.started",
        "sale_id": sale["id"],
        "product_id": sale["product_id"],
        "title": sale["title"],
        "price": sale["price"],
        "list_price": sale["list_price"],
        "currency": sale["currency"],
        "quantity": sale["quantity"],
        "left": sale["left"],
        "per_user_limit": sale["per_user_limit"],
        "ends_at": sale["ends_at"],
    }


def ended_event(sale: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "sale.ended",
        "sale_id": sale["id"],
        "sold": sale["sold"],
        "reserved": sale["reserved"],
        "left": sale["left"],
    }


RESYNC_MAX_SALES = 50
RESYNC_ENDED_WITHIN_MS = 60_000  # a pub/sub gap lasts seconds: older endings were seen


async def resync_events(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    """The shop as a client should see it after missing events: pinned products, sales that
    ended within the last minute, then the scheduled and live sales' current state.

    Long-ended sales are left out: the pages load a sale they do not know on its event, and a
    stale one must not win over the live sale.
    """
    events: list[dict[str, Any]] = [
        {"type": "products", "pinned": await pinned_products(app, show_id)}
    ]
    ended, current = [], []
    for sale in (await list_sales(app, show_id))[-RESYNC_MAX_SALES:]:
        if sale["status"] == "ended":
            if sale["now"] - sale["ends_at"] < RESYNC_ENDED_WITHIN_MS:
                ended.append(ended_event(sale))
        elif sale["status"] == "scheduled":
            current.append(countdown_event(sale))
        else:
            current.append(started_event(sale))
    return events + ended + current


class BuyBatcher:
    """Queues one show's buy attempts on this node and decides them in micro-batches."""

    def __init__(self, app: web.Application, show_id: str) -> None:
        self.app = app
        self.show_id = show_id
        self.keys = ck.buy_script_keys(show_id)
        self.pending: list[tuple[str, str, str, str, asyncio.Future[str]]] = []
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()  # a runner removes itself when it exits
        self.batches = 0
        self.touched = 0.0
        self.attempts = 0
        self.short_circuited = 0

    async def decide(self, sale_id: str, user_id: str, name: str, key: str) -> str:
        """The raw outcome of one attempt (``reserved|RID|EXPIRES`` or a code)."""
        soldout = self.app.get(SOLDOUT)  # absent in bare test apps
        if soldout is not None and soldout.answers(sale_id, user_id, key):
            self.short_circuited += 1
            return "sold_out"
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pending.append((sale_id, user_id, name, key, future))
        self.wake.set()
        while len(self.tasks) < IN_FLIGHT:
            task = asyncio.create_task(self.run(), name=f"buy-batcher-{self.show_id}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await future

    async def run(self) -> None:
        soldout = self.app.get(SOLDOUT)
        while True:
            if not self.pending:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), IDLE_EXIT_S)
                except TimeoutError:
                    if not self.pending:
                        # Leave the set in this same step: any later decide() starts a new runner.
                        self.tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
                        return
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            ttl_ms = self.app[SETTINGS].reservation_ttl_s * 1000
            attempts: list[str] = []
            for sale_id, user_id, name, key, _ in batch:
                attempts += (sale_id, user_id, name, key)
            try:
                outcomes = await BUY(
                    self.app, self.keys, [self.show_id, ttl_ms, len(batch), msgpack.packb(attempts)]
                )
            except Exception as exc:  # the Redis call failed: every attempt in it gets the error
                log.warning("buy batch failed: %s", exc)
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(
                            ApiError(
                                503,
                                "unavailable",
                                "the sale could not be reached; retry with the same key",
                            )
                        )
                continue
            self.batches += 1
            self.attempts += len(batch)
            for (sale_id, *_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
                if soldout is None:
                    continue
                if outcome == "sold_out":
                    soldout.learn(self.show_id, sale_id)
                elif outcome.startswith("reserved|"):
                    soldout.clear(sale_id)  # units came back before we saw the event
            if time.monotonic() - self.touched > 5:  # after answering: no batch waits for it
                self.touched = time.monotonic()
                await touch(self.app, self.show_id)


class SoldOut:
    """This node's sold-out flags: sale id → users holding units (snapshot), learned from batches.

    The snapshot is exact for as long as the flag stands: while nothing is left nobody can gain
    a unit, and a unit can only leave its holder by a release, which returns stock and so
    clears the flag (``sale.stock`` with ``left`` > 0).
    """

    def __init__(self, app: web.Application) -> None:
        self.app = app
        # sale id → (flagged since, monotonic s; the sale's end, ms; users holding units)
        self.flags: dict[str, tuple[float, int, frozenset[str]]] = {}
        self.learning: set[str] = set()
        self.watched: dict[str, set[str]] = {}  # show → flagged or learning sales
        self.subscriber: Subscriber | None = None
        self.records: list[tuple[str, str]] = []  # (show, buy_keys field) to set to "sold_out"
        self.tasks: set[asyncio.Task[None]] = set()
        self.record_wake = asyncio.Event()

    def answers(self, sale_id: str, user_id: str, key: str) -> bool:
        """True when the attempt is answered ``sold_out`` here (and its key queued for recording)."""
        flag = self.flags.get(sale_id)
        if flag is None:
            return False
        since, end_ms, holders = flag
        now = time.monotonic()
        if now_ms(self.app) >= end_ms or now - since >= SOLDOUT_RECHECK_S:
            self.clear(sale_id)  # ended (Redis answers `ended`) or due for a recheck
            return False
        if user_id in holders:
            return False  # their keys may have answered `reserved`: Redis replays them
        self.records.append((sale_id.rpartition(".")[0], f"{sale_id}|{user_id}|{key}"))
        self.record_wake.set()
        return True

    def clear(self, sale_id: str) -> None:
        self.flags.pop(sale_id, None)

    def watched_now(self, show_id: str) -> bool:
        """Whether a sale of the show is flagged or being learned on this node."""
        return any(s in self.flags or s in self.learning for s in self.watched.get(show_id, ()))

    def learn(self, show_id: str, sale_id: str) -> None:
        if sale_id in self.flags or sale_id in self.learning:
            return
        if not self.app[SETTINGS].soldout_short_circuit:
            return
        self.learning.add(sale_id)
        self._spawn(self._learn(show_id, sale_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _learn(self, show_id: str, sale_id: str) -> None:
        """Subscribe first (no stock-return event can be missed after that), then snapshot."""
        redis = self.app[REDIS]
        try:
            self.watched.setdefault(show_id, set()).add(sale_id)
            await self._subscribe(show_id)
            fields_ = [f"{sale_id}:{name}" for name in ("left", "end", "status", "limit")]
            left, end, status, _ = await redis.hmget(ck.sales(show_id), fields_)
            if left is None or int(left) > 0 or status == "ended":
                return
            holders = set()
            async for field_, have in redis.hscan_iter(
                ck.sale_users(show_id), match=f"{sale_id}|*", count=1000
            ):
                if int(have) > 0:
                    holders.add(field_.split("|", 1)[1])
            if int(await redis.hget(ck.sales(show_id), f"{sale_id}:left") or 0) > 0:
                return  # stock came back while we looked
            self.flags[sale_id] = (time.monotonic(), int(end), frozenset(holders))
        except Exception as exc:  # no flag: attempts simply keep going to Redis
            log.warning("sold-out flag for %s not learned: %s", sale_id, exc)
        finally:
            self.learning.discard(sale_id)

    async def _subscribe(self, show_id: str) -> None:
        if self.subscriber is None:
            self.subscriber = Subscriber(self.app, self._on_event, name="soldout")
            task = asyncio.create_task(self._record(), name="soldout-recorder")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        await self.subscriber.subscribe(show_id)

    def _on_event(self, show_id: str, envelope: Envelope) -> None:
        """Stock returned or the sale ended → the flag goes (the next attempt asks Redis)."""
        event = envelope.event
        kind = event.get("type")
        if kind == "sale.stock" and event.get("left", 0) > 0 or kind == "sale.ended":
            self.clear(str(event.get("sale_id")))
        if kind == "sale.ended" and not self.watched_now(show_id):
            # Nothing of this show is flagged any more: stop receiving its events.
            self.watched.pop(show_id, None)
            self._spawn(self.subscriber.unsubscribe(show_id))  # type: ignore[union-attr]

    async def _record(self) -> None:
        """Record short-circuited keys as ``sold_out`` (HSETNX: a key keeps its first answer),
        one ``soldout_record.lua`` call per show and batch (one packed argument, like buy.lua)."""
        while True:
            await self.record_wake.wait()
            self.record_wake.clear()
            while self.records:
                batch, self.records = self.records[:RECORD_BATCH], self.records[RECORD_BATCH:]
                by_show: dict[str, list[str]] = {}
                for show_id, name in batch:
                    by_show.setdefault(show_id, []).append(name)
                for show_id, names in by_show.items():
                    try:
                        await SOLDOUT_RECORD(
                            self.app, [ck.buy_keys(show_id)], [msgpack.packb(names)]
                        )
                    except Exception as exc:
                        log.warning("recording %d sold-out keys failed: %s", len(names), exc)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.subscriber is not None:
            await self.subscriber.close()


SOLDOUT = web.AppKey("soldout_flags", SoldOut)
BATCHERS = web.AppKey("buy_batchers", dict[str, BuyBatcher])


def outcome_body(sale_id: str, raw: str) -> dict[str, Any]:
    """The reply to a buy attempt: ``{"outcome", "sale_id"[, "reservation_id", "expires_at"]}``."""
    if raw == "unknown_sale":
        raise not_found("sale_not_found", f"no sale {sale_id!r}")
    if raw.startswith("reserved|"):
        _, rid, expires = raw.split("|")
        return {
            "outcome": "reserved",
            "sale_id": sale_id,
            "reservation_id": rid,
            "expires_at": int(expires),
        }
    return {"outcome": raw, "sale_id": sale_id}


async def buy(app: web.Application, claims: Claims, sale_id: Any, key: str) -> dict[str, Any]:
    """Decide one buy attempt through the show's micro-batcher."""
    if not isinstance(sale_id, str):
        raise bad_request("bad_field", "sale_id is required", field="sale_id")
    show_id = ck.show_of(sale_id, "s")
    if show_id != claims.show_id:
        raise ApiError(403, "forbidden", "token is for another show")
    batchers = app[BATCHERS]
    batcher = batchers.get(show_id)
    if batcher is None:
        batcher = batchers[show_id] = BuyBatcher(app, show_id)
    body = outcome_body(sale_id, await batcher.decide(sale_id, claims.user_id, claims.name, key))
    if body["outcome"] == "reserved":
        await insight.reserved(app, show_id, claims.user_id, sale_id)
    return body


async def handle_buy(request: web.Request) -> web.Response:
    sale_id = request.match_info["sale_id"]
    token = auth.token_from_request(request)
    if not token:
        raise ApiError(401, "unauthorized", "a valid token is required to buy")
    claims = auth.verify_for(request.app, token, ck.show_of(sale_id, "s"))
    key = fields.idempotency_key(await read_json(request, 4096))
    body = await buy(request.app, claims, sale_id, key)
    await alerts.bought_from(request.app, claims, client_ip(request), body)
    return web.json_response(body)


class Buy(Message, tag="buy"):
    """Try to reserve one unit of a live flash sale. Replied with `{outcome, sale_id[, reservation_id, expires_at]}` (see "Buy outcomes and idempotency"); the same `key` answers its first outcome."""

    key: fields.IdempotencyKey
    sale_id: Annotated[str, Meta(description="the sale (`SHOW.s1`)")]


async def ws_buy(app: web.Application, claims: Claims, body: Buy) -> dict[str, Any]:
    reply = await buy(app, claims, body.sale_id, body.key)
    await alerts.bought_from(app, claims, ws_client_ip(), reply)
    return reply


async def handle_create(request: web.Request) -> web.Response:
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    await authenticate(request, show_id, STAFF)
    sale = await create_sale(request.app, show_id, await read_json(request))
    return web.json_response({"sale": sale}, status=201)


async def handle_list(request: web.Request) -> web.Response:
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    return web.json_response({"sales": await list_sales(request.app, show_id)})


async def handle_get(request: web.Request) -> web.Response:
    return web.json_response({"sale": await get_sale(request.app, request.match_info["sale_id"])})


async def handle_end(request: web.Request) -> web.Response:
    """Stop a sale early (staff). Live reservations stay payable until they expire."""
    sale_id = request.match_info["sale_id"]
    show_id = ck.show_of(sale_id, "s")
    await authenticate(request, show_id, STAFF)
    sale = await get_sale(request.app, sale_id)
    if sale["status"] != "ended":
        await request.app[REDIS].hset(ck.sales(show_id), f"{sale_id}:status", "ended")
    return web.json_response({"sale": await get_sale(request.app, sale_id)})


async def batchers_ctx(app: web.Application) -> AsyncIterator[None]:
    app[BATCHERS] = {}
    app[SOLDOUT] = SoldOut(app)
    yield
    await app[SOLDOUT].close()
    for batcher in app[BATCHERS].values():
        for task in list(batcher.tasks):
            task.cancel()


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(batchers_ctx)
    # Routes sharing the /api/sales prefix are tried in registration order: the hot one first.
    app.router.add_post("/api/sales/{sale_id}/buy", handle_buy)
    app.router.add_post("/api/shows/{show_id}/sales", handle_create)
    app.router.add_get("/api/shows/{show_id}/sales", handle_list)
    app.router.add_get("/api/sales/{sale_id}", handle_get)
    app.router.add_post("/api/sales/{sale_id}/end", handle_end)
    register(app, COMMERCE_COMMANDS, [Command(Buy, ws_buy)])

"""Flash sales and the buy path.

A sale lives in the show's ``{show}:sales`` hash (``SALE:field``). Buying goes through a
per-show micro-batcher: attempts arriving on this node while one script call is in flight are
queued and decided together by the next ``buy.lua`` call (one EVALSHA for up to
``MAX_BATCH`` attempts). Inside the script attempts are decided one after the other, so each is
as atomic as if it had its own call, and the batch size grows with the load by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
from aiohttp import web

from .. import auth
from ..appkeys import REDIS, SETTINGS, WS_HANDLERS
from ..auth import STAFF, Claims, authenticate
from ..errors import ApiError, bad_request, conflict, not_found, read_json
from ..events import publish
from ..shows import get_show
from . import fields
from . import keys as ck
from .activity import touch
from .scripts import SCRIPTS

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
OUTCOMES = ("reserved", "sold_out", "limit_reached", "not_started", "ended")


def sale_status(sale: dict[str, Any], now_ms: int) -> str:
    """scheduled (countdown), live or ended."""
    if sale["status"] == "ended" or now_ms >= sale["ends_at"]:
        return "ended"
    return "scheduled" if now_ms < sale["starts_at"] else "live"


def _view(sale_id: str, raw: list[str | None]) -> dict[str, Any] | None:
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
    now = int(time.time() * 1000)
    sale["status"] = sale_status(sale, now)
    sale["now"] = now
    return sale


async def get_sale(app: web.Application, sale_id: str) -> dict[str, Any]:
    """The sale with live counters (quantity = left + reserved + sold), or 404 ``sale_not_found``."""
    show_id = ck.show_of(sale_id, "s")
    raw = await app[REDIS].hmget(ck.sales(show_id), [f"{sale_id}:{name}" for name in SALE_FIELDS])
    sale = _view(sale_id, raw)
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
        show_id: [sale for sale_id in sale_ids if (sale := _view(sale_id, next(rows)))]
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
    result = await app[SCRIPTS].sale_create(
        keys=[ck.products(show_id), ck.stock(show_id), ck.sales(show_id), ck.seq(show_id)],
        args=[show_id, product_id, quantity, price, limit, starts_in * 1000, duration * 1000],
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
        "seconds_left": max(0, round((sale["starts_at"] - int(time.time() * 1000)) / 1000)),
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

    async def decide(self, sale_id: str, user_id: str, name: str, key: str) -> str:
        """The raw outcome of one attempt (``reserved|RID|EXPIRES`` or a code)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pending.append((sale_id, user_id, name, key, future))
        self.wake.set()
        while len(self.tasks) < IN_FLIGHT:
            task = asyncio.create_task(self.run(), name=f"buy-batcher-{self.show_id}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await future

    async def run(self) -> None:
        script = self.app[SCRIPTS].buy
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
                outcomes = await script(
                    keys=self.keys,
                    args=[self.show_id, ttl_ms, len(batch), msgpack.packb(attempts)],
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
            for (*_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
            if time.monotonic() - self.touched > 5:  # after answering: no batch waits for it
                self.touched = time.monotonic()
                await touch(self.app, self.show_id)


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
    return outcome_body(sale_id, await batcher.decide(sale_id, claims.user_id, claims.name, key))


async def handle_buy(request: web.Request) -> web.Response:
    sale_id = request.match_info["sale_id"]
    token = auth.token_from_request(request)
    if not token:
        raise ApiError(401, "unauthorized", "a valid token is required to buy")
    claims = auth.verify_for(request.app, token, ck.show_of(sale_id, "s"))
    key = fields.idempotency_key(await read_json(request, 4096))
    return web.json_response(await buy(request.app, claims, sale_id, key))


async def ws_buy(app: web.Application, claims: Claims, message: dict[str, Any]) -> dict[str, Any]:
    return await buy(app, claims, message.get("sale_id"), fields.idempotency_key(message))


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
    yield
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
    app[WS_HANDLERS]["buy"] = ws_buy

"""What auctions, group buys and polls share: the app clock, their Lua scripts, the micro-batcher.

Every script of these three takes the time as an argument (``now_ms``) from the app clock
instead of calling Redis ``TIME``: the decisions stay atomic in Redis, and tests drive the clock
past windows and soft closes without sleeping. The reservations they create are then handled
by ``order.lua`` (pay, expire), which reads the app clock too (``server.redis.lua`` appends it): tests
that pass an explicit ``now`` and then pay such reservations start their clock at wall time. The scripts that create reservations
(``auction.lua``, ``group.lua``) share ``interactive_lib.lua``, prepended when they are loaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
from aiohttp import web

from ..appkeys import SETTINGS
from ..auth import STAFF, Claims, authenticate
from ..clock import CLOCK, Clock, now_ms  # noqa: F401
from ..errors import ApiError, bad_request, forbidden, read_json
from ..redis.lua import Script
from ..shows import get_show
from . import keys as ck
from .scripts import INTERACTIVE

log = logging.getLogger("liveshop.interactive")

HERE = Path(__file__).parent
# The app clock lives in server.clock (every window-deciding script uses it); re-exported here.


async def scripts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Stop the micro-batchers at the end (the scripts are declared in :mod:`.scripts`)."""
    app[IBATCHERS] = {}
    yield
    for batcher in app[IBATCHERS].values():
        batcher.cancel()


def base_keys(show_id: str) -> list[str]:
    """KEYS 1..11 of auction.lua and group.lua (see interactive_lib.lua)."""
    return [
        *ck.order_keys(show_id),
        ck.seq(show_id),
        ck.products(show_id),
        ck.stock(show_id),
        ck.interactive_live(show_id),
    ]


async def run(app: web.Application, script: Script, keys: list[str], *args: Any) -> dict[str, Any]:
    """Run one of the scripts; they all answer one JSON object."""
    return dict(json.loads(await script(app, keys, args)))


def ttl_ms(app: web.Application) -> int:
    return int(app[SETTINGS].reservation_ttl_s * 1000)


def own_show(claims: Claims, entity_id: Any, kind: str, field: str) -> str:
    """The show of ``entity_id`` (an id of ``kind``), which must be the token's show."""
    if not isinstance(entity_id, str):
        raise bad_request("bad_field", f"{field} is required", field=field)
    show_id = ck.show_of(entity_id, kind)
    same_show(claims, show_id)
    return show_id


def create_route(create: Any, name: str) -> Any:
    """``POST /api/shows/{show_id}/…`` (staff): ``create(app, claims, show_id, body)`` → 201 ``{name}``."""

    async def handle(request: web.Request) -> web.Response:
        show_id = request.match_info["show_id"]
        await get_show(request.app, show_id)
        claims = await authenticate(request, show_id, STAFF)
        made = await create(request.app, claims, show_id, await read_json(request))
        return web.json_response({name: made}, status=201)

    return handle


def list_route(list_all: Any, name: str) -> Any:
    """``GET /api/shows/{show_id}/…`` (public): ``{name: list_all(app, show_id)}``."""

    async def handle(request: web.Request) -> web.Response:
        show_id = request.match_info["show_id"]
        await get_show(request.app, show_id)
        return web.json_response({name: await list_all(request.app, show_id)})

    return handle


def same_show(claims: Claims, show_id: str) -> None:
    if claims.show_id != show_id:
        raise forbidden("token is for another show")


def staff_only(claims: Claims, what: str) -> None:
    """Viewers may take part in an auction, a group buy or a poll, never create, end or rig one."""
    if claims.role not in STAFF:
        raise forbidden(f"role '{claims.role}' may not {what}")


def staff_product(claims: Claims, show_id: str, body: dict[str, Any], what: str) -> str:
    """The ``product_id`` of a staff request to ``what`` on a product of its own show."""
    staff_only(claims, what)
    same_show(claims, show_id)
    product_id = body.get("product_id")
    if not isinstance(product_id, str):
        raise bad_request("bad_field", "product_id is required", field="product_id")
    if ck.show_of(product_id, "p") != show_id:
        raise ApiError(404, "product_not_found", f"no product {product_id!r} in this show")
    return product_id


def stock_error(code: str, product_id: str) -> ApiError:
    """The create error of a take_stock failure, worded like the flash sale's."""
    if code == "unknown_product":
        return ApiError(404, "product_not_found", f"no product {product_id!r}")
    if code == "out_of_stock":
        return ApiError(409, "out_of_stock", "the product has no stock left")
    have = int(code.split(":")[1])
    return ApiError(409, "insufficient_stock", f"the product has only {have} in stock", stock=have)


class MicroBatcher:
    """Items arriving while one script call is in flight are decided together by the next call.

    The pattern of the flash sale's buy batcher (:class:`.sales.BuyBatcher`), for any script
    that decides a list of items one after the other: ``decide_batch(items)`` returns one result
    per item. At most ``in_flight`` calls run at once; runners leave after ``idle_s`` idle.
    """

    def __init__(
        self,
        decide_batch: Callable[[list[Any]], Awaitable[list[Any]]],
        max_batch: int = 1000,
        in_flight: int = 2,
        idle_s: float = 30.0,
    ) -> None:
        self.decide_batch = decide_batch
        self.max_batch = max_batch
        self.in_flight = in_flight
        self.idle_s = idle_s
        self.pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.calls = 0

    async def submit(self, item: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        self.wake.set()
        while len(self.tasks) < self.in_flight:
            task = asyncio.create_task(self.run())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await future

    async def run(self) -> None:
        while True:
            if not self.pending:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), self.idle_s)
                except TimeoutError:
                    if not self.pending:
                        self.tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
                        return
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            try:
                results = await self.decide_batch([item for item, _ in batch])
            except Exception as exc:  # the call failed: every item in it gets the error
                log.warning("interactive batch failed: %s", exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(
                            ApiError(503, "unavailable", "Redis could not be reached; retry")
                        )
                continue
            self.calls += 1
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()


IBATCHERS = web.AppKey("interactive_batchers", dict[tuple[str, str], MicroBatcher])


async def decide(
    app: web.Application,
    script: str,
    op: str,
    keys: list[str],
    item: tuple[Any, ...],
    now: int | None = None,
    extra: tuple[Any, ...] = (),
) -> dict[str, Any]:
    """Decide one vote / bid / join: with the app clock through the show's micro-batcher (one
    ``op`` call of ``script`` per batch: ARGV now, n, msgpack of the items, *extra; n JSON answers
    back); with an explicit ``now`` (tests) alone, at that time."""

    def call(at: int | None) -> Callable[[list[Any]], Awaitable[list[Any]]]:
        async def batch(items: list[Any]) -> list[Any]:
            flat = [value for one in items for value in one]
            when = now_ms(app) if at is None else at
            raw = await INTERACTIVE[script](
                app, keys, [op, when, len(items), msgpack.packb(flat), *extra]
            )
            return [json.loads(answer) for answer in raw]

        return batch

    if now is not None:
        return dict((await call(now)([item]))[0])
    batchers = app[IBATCHERS]
    batcher = batchers.get((op, keys[0]))  # keys[0] carries the show's hash tag
    if batcher is None:
        batcher = batchers[(op, keys[0])] = MicroBatcher(call(None))
    return dict(await batcher.submit(item))

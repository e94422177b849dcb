"""Live auctions with a soft close (anti-sniping) and proxy bids.

An auction takes one unit of a product's stock. Bids are decided one at a time in
``auction.lua`` (HTTP and WebSocket, with an idempotency key; the bids arriving on a node while a
call is in flight are decided together, in arrival order, by the next call): accepted at the start price
first, then at price + increment; a proxy (maximum) bid is raised by the server by the
increment against later challengers, as on eBay. A bid in the last ``soft_close_s`` seconds
moves the end to now + soft_close_s, never past ``ends_at`` + ``extension_cap_s``.

At the close (time up, run by the show's timers, or staff early) the leader wins if the price
reaches the reserve: they get a reservation at the winning price, paid through the normal
checkout (``POST /api/orders/{id}/pay``). If that reservation expires or is cancelled the unit
is **released**, not offered to the runner-up: it stays with the auction as unsold (``left`` 1)
— a runner-up offer would make an expiry a second sale at a price the runner-up may no longer
want, and the host can simply start a new auction.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from .. import insight
from ..appkeys import REDIS
from ..auth import STAFF, Claims, authenticate
from ..errors import bad_request, not_found, read_json
from ..protocol import Command, Message, register
from ..redis.broker import publish
from . import fields
from . import keys as ck
from .activity import touch
from .fields import COMMERCE_COMMANDS
from .interactive import (
    base_keys,
    create_route,
    decide,
    list_route,
    now_ms,
    own_show,
    run,
    staff_only,
    staff_product,
    stock_error,
    ttl_ms,
)  # fmt: skip
from .scripts import AUCTION

FIELDS = (
    "product", "title", "currency", "start_price", "inc", "reserve", "start", "end", "cap", "soft",
    "price", "bids", "leader", "leader_name", "status", "created", "closed_at", "winner",
    "winner_name", "reservation",
)  # fmt: skip
INT_FIELDS = {"start_price", "inc", "reserve", "start", "end", "cap", "soft", "price", "bids",
              "created", "closed_at"}  # fmt: skip
MAX_MONEY = 100_000_000_00


def auction_keys(show_id: str) -> list[str]:
    return [
        *base_keys(show_id),
        ck.auctions(show_id),
        ck.auction_keys(show_id),
        ck.auction_bids(show_id),
        ck.funnel(show_id, "bid"),
    ]


async def create_auction(
    app: web.Application, claims: Claims, show_id: str, body: dict[str, Any], now: int | None = None
) -> dict[str, Any]:
    product_id = staff_product(claims, show_id, body, "start an auction")
    start_price = fields.integer(body, "start_price", 1, MAX_MONEY)
    increment = fields.integer(body, "increment", 1, MAX_MONEY, default=100)
    reserve = fields.integer(body, "reserve_price", 0, MAX_MONEY, default=0)
    starts_in = fields.integer(body, "starts_in_s", 0, 24 * 3600, default=0)
    duration = fields.integer(body, "duration_s", 5, 24 * 3600, default=120)
    soft = fields.integer(body, "soft_close_s", 1, 600, default=10)
    cap = fields.integer(body, "extension_cap_s", 0, 24 * 3600, default=300)
    now = now_ms(app) if now is None else now
    result = await run(
        app, AUCTION, auction_keys(show_id), "create", show_id, product_id, start_price,
        increment, reserve, starts_in * 1000, duration * 1000, soft * 1000, cap * 1000, now,
    )  # fmt: skip
    if "error" in result:
        raise stock_error(result["error"], product_id)
    until = now + (starts_in + duration + cap) * 1000
    await touch(app, show_id, until + 60_000)
    auction = await get_auction(app, result["id"], now)
    await publish(app, show_id, {"type": "auction.started", **event_fields(auction)})
    return auction


def _view(auction_id: str, raw: list[str | None], now: int) -> dict[str, Any]:
    f: dict[str, Any] = {
        name: (int(v) if name in INT_FIELDS and v is not None else v)
        for name, v in zip(FIELDS, raw, strict=True)
    }
    if f["status"] == "live":
        status = "scheduled" if now < f["start"] else "ended" if now >= f["end"] else "live"
    else:
        status = "ended"
    return {
        "id": auction_id,
        "show_id": ck.show_of(auction_id, "a"),
        "product_id": f["product"],
        "title": f["title"],
        "currency": f["currency"],
        "start_price": f["start_price"],
        "increment": f["inc"],
        "reserve_met": f["reserve"] == 0 or (f["bids"] > 0 and f["price"] >= f["reserve"]),
        "price": f["price"],
        "min_bid": f["start_price"] if f["bids"] == 0 else f["price"] + f["inc"],
        "bids": f["bids"],
        "leader_name": f["leader_name"] or "",
        "starts_at": f["start"],
        "ends_at": f["end"],
        "extension_cap_at": f["cap"],
        "soft_close_s": f["soft"] // 1000,
        "status": status,
        "closed": f["status"] != "live",
        "winner_user_id": f["winner"],
        "winner_name": f["winner_name"],
        "reservation_id": f["reservation"],
        "created_at": f["created"],
    }


async def get_auction(
    app: web.Application, auction_id: str, now: int | None = None
) -> dict[str, Any]:
    """The auction's public state (the reserve price itself stays secret: only ``reserve_met``)."""
    show_id = ck.show_of(auction_id, "a")
    raw = await app[REDIS].hmget(ck.auctions(show_id), [f"{auction_id}:{n}" for n in FIELDS])
    if raw[0] is None:
        raise not_found("auction_not_found", f"no auction {auction_id!r}")
    return _view(auction_id, raw, now_ms(app) if now is None else now)


async def list_auctions(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    count = int(await app[REDIS].hget(ck.seq(show_id), "auction") or 0)
    return [await get_auction(app, f"{show_id}.a{i}") for i in range(1, count + 1)]


def event_fields(auction: dict[str, Any]) -> dict[str, Any]:
    return {
        "auction_id": auction["id"],
        "product_id": auction["product_id"],
        "title": auction["title"],
        "currency": auction["currency"],
        "price": auction["price"],
        "min_bid": auction["min_bid"],
        "increment": auction["increment"],
        "leader_name": auction["leader_name"],
        "bids": auction["bids"],
        "starts_at": auction["starts_at"],
        "ends_at": auction["ends_at"],
        "reserve_met": auction["reserve_met"],
    }


async def bid(
    app: web.Application,
    claims: Claims,
    auction_id: Any,
    amount: Any,
    key: str,
    max_amount: Any = 0,
    now: int | None = None,
) -> dict[str, Any]:
    """Decide one bid; the outcome is an answer (200), not an error. A repeated key answers its first reply."""
    show_id = own_show(claims, auction_id, "a", "auction_id")
    amount = fields.integer({"amount": amount}, "amount", 1, MAX_MONEY)
    max_amount = fields.integer({"max_amount": max_amount or 0}, "max_amount", 0, MAX_MONEY)
    if max_amount and max_amount < amount:
        raise bad_request("bad_field", "max_amount must be at least amount", field="max_amount")
    item = (auction_id, claims.user_id, claims.name, key, amount, max_amount)
    result = await decide(app, "auction", "bids", auction_keys(show_id), item, now)
    if result["outcome"] == "unknown_auction":
        raise not_found("auction_not_found", f"no auction {auction_id!r}")
    await insight.action(app, show_id, "bid", claims.user_id)
    return {"auction_id": auction_id, **result}


async def close_auction(
    app: web.Application, auction_id: str, now: int | None = None, force: bool = True
) -> tuple[bool, dict[str, Any]]:
    """End the auction (``force``: now; else only once its end passed). (closed by this call?, auction)."""
    show_id = ck.show_of(auction_id, "a")
    now = now_ms(app) if now is None else now
    result = await run(
        app, AUCTION, auction_keys(show_id), "close", show_id, auction_id, now,
        "1" if force else "0", ttl_ms(app),
    )  # fmt: skip
    if result["outcome"] == "unknown_auction":
        raise not_found("auction_not_found", f"no auction {auction_id!r}")
    auction = await get_auction(app, auction_id, now)
    if result["outcome"] != "ended":
        return False, auction
    event = {
        "type": "auction.ended",
        **event_fields(auction),
        "winner_user_id": result.get("winner"),
        "winner_name": result.get("winner_name"),
        "reservation_id": result.get("reservation_id"),
        "expires_at": result.get("expires_at"),
    }
    await publish(app, show_id, event)
    return True, auction


async def end_auction(app: web.Application, claims: Claims, auction_id: Any) -> dict[str, Any]:
    own_show(claims, auction_id, "a", "auction_id")
    staff_only(claims, "end an auction")
    _, auction = await close_auction(app, auction_id)
    return auction


async def bid_log(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    """Every decided bid of the show (audit trail, oldest first)."""
    return [json.loads(raw) for raw in await app[REDIS].lrange(ck.auction_bids(show_id), 0, -1)]


async def tick(
    app: web.Application, show_id: str, auction_ids: list[str], memo: dict[str, Any], now: int
) -> None:
    """Close auctions whose (extended) end passed; broadcast the state when bids changed it."""
    for auction_id in auction_ids:
        auction = await get_auction(app, auction_id, now)
        if auction["status"] == "ended":
            await close_auction(app, auction_id, now, force=False)
            memo.pop(auction_id, None)
            continue
        signature = (auction["bids"], auction["ends_at"])
        if memo.get(auction_id) != signature:
            memo[auction_id] = signature
            await publish(app, show_id, {"type": "auction.bid", **event_fields(auction)})


# -- HTTP and WebSocket --------------------------------------------------------------------


async def handle_get(request: web.Request) -> web.Response:
    auction_id = request.match_info["auction_id"]
    return web.json_response({"auction": await get_auction(request.app, auction_id)})


async def handle_bid(request: web.Request) -> web.Response:
    auction_id = request.match_info["auction_id"]
    claims = await authenticate(request, ck.show_of(auction_id, "a"))
    body = await read_json(request, 4096)
    key = fields.idempotency_key(body)
    reply = await bid(
        request.app, claims, auction_id, body.get("amount"), key, body.get("max_amount", 0)
    )
    return web.json_response(reply)


async def handle_bids(request: web.Request) -> web.Response:
    """Staff: the auction's decided bids in decision order (proxy ceilings included: not public)."""
    auction_id = request.match_info["auction_id"]
    show_id = ck.show_of(auction_id, "a")
    await authenticate(request, show_id, STAFF)
    await get_auction(request.app, auction_id)
    bids = [b for b in await bid_log(request.app, show_id) if b["a"] == auction_id]
    return web.json_response({"bids": bids})


async def handle_end(request: web.Request) -> web.Response:
    auction_id = request.match_info["auction_id"]
    claims = await authenticate(request, ck.show_of(auction_id, "a"))
    return web.json_response({"auction": await end_auction(request.app, claims, auction_id)})


AUCTION_ID = Annotated[str, Meta(max_length=80, description="the auction")]
MINOR_UNITS = 10_000_000_000


class AuctionBid(Message, tag="auction.bid"):
    """Bid. Replied with `{outcome, auction_id, price, leader_name, bids, ends_at}`; outcome `leading`, `outbid_by_higher` (accepted, but a proxy bid of the leader is higher), `too_low`, `ended`, `not_started`. The same `key` answers its first reply."""

    auction_id: AUCTION_ID
    amount: Annotated[
        int,
        Meta(
            ge=1,
            le=MINOR_UNITS,
            description="bid in minor units: at least the start price, then price + increment",
        ),
    ]
    # Typed here, its pattern checked by the handler (bad_key): a missing or non-string key has
    # always been bad_field for bids (buy's IdempotencyKey says bad_key for both).
    key: Annotated[str, Meta(max_length=64, description="idempotency key, 1-64 of A-Za-z0-9_.:-")]
    max_amount: Annotated[
        int,
        Meta(
            ge=0,
            le=MINOR_UNITS,
            description="proxy bid: the server raises your bid by the increment up to this (≥ amount)",
        ),
    ] = 0


async def ws_bid(app: web.Application, claims: Claims, body: AuctionBid) -> dict[str, Any]:
    key = fields.idempotency_key({"key": body.key})
    return await bid(app, claims, body.auction_id, body.amount, key, body.max_amount)


class AuctionEnd(Message, tag="auction.end"):
    """Staff: close an auction now (the leader, if over the reserve, wins). Replied with `{auction}`."""

    auction_id: AUCTION_ID


async def ws_end(app: web.Application, claims: Claims, body: AuctionEnd) -> dict[str, Any]:
    return {"auction": await end_auction(app, claims, body.auction_id)}


COMMANDS = (
    Command(AuctionBid, ws_bid),
    Command(AuctionEnd, ws_end, roles=STAFF, refusal="role '{role}' may not end an auction"),
)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/auctions/{auction_id}/bid", handle_bid)
    app.router.add_post("/api/shows/{show_id}/auctions", create_route(create_auction, "auction"))
    app.router.add_get("/api/shows/{show_id}/auctions", list_route(list_auctions, "auctions"))
    app.router.add_get("/api/auctions/{auction_id}", handle_get)
    app.router.add_post("/api/auctions/{auction_id}/end", handle_end)
    app.router.add_get("/api/auctions/{auction_id}/bids", handle_bids)
    register(app, COMMERCE_COMMANDS, COMMANDS)

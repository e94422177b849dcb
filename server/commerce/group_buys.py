"""Group buys (拼團): the group price unlocks when ``size`` viewers join within the window.

A deal takes ``quantity`` units of a product's stock, like a flash sale, so deals, sales and
auctions on one product can never oversell it between them. Its groups form one after another
(e.g. 3-person groups until the units run out): the first join opens a group and its window;
each join holds one unit; the size-th join forms the group and turns every member's unit into a
reservation at the group price, paid through the normal checkout (``group.formed`` tells each
member their ``reservation_id``). A window that ends short fails the group: every held unit goes
back to the deal exactly once and the members are told (``group.failed``). A user is in at most
one group of a deal at a time (open or formed); they may leave an open group, and join the next
group after a failure. All of it is ``group.lua``, atomic per call (joins arriving on a node while a call is in flight
are decided together, in arrival order, by the next call); the show's timers close windows.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from ..appkeys import REDIS
from ..auth import Claims, authenticate
from ..errors import bad_request, not_found
from ..protocol import STAFF, Command, Message, register
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
from .scripts import GROUP

FIELDS = (
    "status", "product", "title", "currency", "list_price", "price", "size", "qty", "window",
    "start", "end", "held", "group", "groups", "formed", "failed", "created",
)  # fmt: skip
TEXT_FIELDS = {"status", "product", "title", "currency"}


def deal_keys(show_id: str) -> list[str]:
    return [
        *base_keys(show_id),
        ck.group_deals(show_id),
        ck.group_members(show_id),
        ck.groups(show_id),
        ck.funnel(show_id, "group_joined"),
    ]


def _list(value: Any) -> list[Any]:
    """cjson encodes an empty Lua table as ``{}``."""
    return value if isinstance(value, list) else []


async def create_deal(
    app: web.Application, claims: Claims, show_id: str, body: dict[str, Any], now: int | None = None
) -> dict[str, Any]:
    product_id = staff_product(claims, show_id, body, "start a group buy")
    price = fields.integer(body, "group_price", 1, 100_000_000_00)
    size = fields.integer(body, "group_size", 2, 100)
    quantity = fields.integer(body, "quantity", 1, 1_000_000, default=size)
    if quantity < size:
        raise bad_request("bad_field", "quantity must be at least group_size", field="quantity")
    window = fields.integer(body, "window_s", 5, 24 * 3600, default=300)
    starts_in = fields.integer(body, "starts_in_s", 0, 24 * 3600, default=0)
    duration = fields.integer(body, "duration_s", 5, 7 * 24 * 3600, default=1800)
    now = now_ms(app) if now is None else now
    result = await run(
        app, GROUP, deal_keys(show_id), "create", show_id, product_id, price, size,
        quantity, window * 1000, starts_in * 1000, duration * 1000, now,
    )  # fmt: skip
    if "error" in result:
        raise stock_error(result["error"], product_id)
    await touch(app, show_id, now + (starts_in + duration) * 1000 + 60_000)
    deal = await get_deal(app, result["id"], now)
    await publish(app, show_id, {"type": "group.created", **progress_fields(deal)})
    return deal


async def get_deal(app: web.Application, deal_id: str, now: int | None = None) -> dict[str, Any]:
    """The deal with its unit counters and its open group, or 404 ``group_buy_not_found``."""
    show_id = ck.show_of(deal_id, "g")
    redis = app[REDIS]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(ck.group_deals(show_id), [f"{deal_id}:{n}" for n in FIELDS])
        pipe.hmget(ck.sales(show_id), [f"{deal_id}:{n}" for n in ("left", "reserved", "sold")])
        raw, units = await pipe.execute()
    if raw[0] is None:
        raise not_found("group_buy_not_found", f"no group buy {deal_id!r}")
    f: dict[str, Any] = {
        n: (v if n in TEXT_FIELDS else int(v or 0)) for n, v in zip(FIELDS, raw, strict=True)
    }
    now = now_ms(app) if now is None else now
    group = None
    if f["group"]:
        g = json.loads(await redis.hget(ck.groups(show_id), f"{deal_id}#{f['group']}") or "{}")
        members = _list(g.get("members"))
        group = {
            "number": g.get("n"),
            "joined": len(members),
            "members": [name for _, name in members],
            "opened_at": g.get("opened"),
            "ends_at": g.get("ends"),
        }
    if f["status"] != "live" or now >= f["end"]:
        status = "ended"
    else:
        status = "scheduled" if now < f["start"] else "live"
    left, reserved, sold = (int(v or 0) for v in units)
    return {
        "id": deal_id,
        "show_id": show_id,
        "product_id": f["product"],
        "title": f["title"],
        "currency": f["currency"],
        "list_price": f["list_price"],
        "group_price": f["price"],
        "group_size": f["size"],
        "quantity": f["qty"],
        "left": left,
        "held": f["held"],
        "reserved": reserved,
        "sold": sold,
        "window_s": f["window"] // 1000,
        "starts_at": f["start"],
        "ends_at": f["end"],
        "status": status,
        "closed": f["status"] != "live",
        "groups_formed": f["formed"],
        "groups_failed": f["failed"],
        "open_group": group,
    }


async def list_deals(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    count = int(await app[REDIS].hget(ck.seq(show_id), "group_buy") or 0)
    return [await get_deal(app, f"{show_id}.g{i}") for i in range(1, count + 1)]


async def list_groups(app: web.Application, deal_id: str) -> list[dict[str, Any]]:
    """Every group of the deal so far (status open/formed/failed/empty, members), in order."""
    show_id = ck.show_of(deal_id, "g")
    count = int(await app[REDIS].hget(ck.group_deals(show_id), f"{deal_id}:groups") or 0)
    if not count:
        return []
    names = [f"{deal_id}#{n}" for n in range(1, count + 1)]
    rows = await app[REDIS].hmget(ck.groups(show_id), names)
    out = []
    for raw in rows:
        if raw:
            g = json.loads(raw)
            g["members"] = _list(g.get("members"))
            g["reservations"] = _list(g.get("reservations"))
            out.append(g)
    return out


def progress_fields(deal: dict[str, Any]) -> dict[str, Any]:
    group = deal["open_group"]
    return {
        "deal_id": deal["id"],
        "product_id": deal["product_id"],
        "title": deal["title"],
        "currency": deal["currency"],
        "group_price": deal["group_price"],
        "list_price": deal["list_price"],
        "size": deal["group_size"],
        "group": group["number"] if group else None,
        "joined": group["joined"] if group else 0,
        "ends_at": group["ends_at"] if group else None,
        "deal_ends_at": deal["ends_at"],
        "left": deal["left"],
        "groups_formed": deal["groups_formed"],
    }


async def _publish_events(app: web.Application, show_id: str, result: dict[str, Any]) -> None:
    for event in _list(result.get("events")):
        if "members" in event:
            event["members"] = _list(event["members"])
        await publish(app, show_id, event)


def _reply(result: dict[str, Any]) -> dict[str, Any]:
    return {name: v for name, v in result.items() if name != "events"}


async def join(
    app: web.Application, claims: Claims, deal_id: Any, now: int | None = None
) -> dict[str, Any]:
    """Join the deal's open group (or open the next one). The outcome is an answer, not an error."""
    show_id = own_show(claims, deal_id, "g", "deal_id")
    item = (deal_id, claims.user_id, claims.name)
    extra = (ttl_ms(app), show_id)
    result = await decide(app, "group", "joins", deal_keys(show_id), item, now, extra)
    if result["outcome"] == "unknown_deal":
        raise not_found("group_buy_not_found", f"no group buy {deal_id!r}")
    await _publish_events(app, show_id, result)
    return _reply(result)


async def leave(
    app: web.Application, claims: Claims, deal_id: Any, now: int | None = None
) -> dict[str, Any]:
    show_id = own_show(claims, deal_id, "g", "deal_id")
    result = await run(
        app, GROUP, deal_keys(show_id), "leave", deal_id, claims.user_id,
        now_ms(app) if now is None else now,
    )  # fmt: skip
    if result["outcome"] == "unknown_deal":
        raise not_found("group_buy_not_found", f"no group buy {deal_id!r}")
    await _publish_events(app, show_id, result)
    return _reply(result)


async def settle(
    app: web.Application, deal_id: str, now: int | None = None, force: bool = False
) -> dict[str, Any]:
    """Fail a group whose window ended and end a deal that is over (``force``: end it now)."""
    show_id = ck.show_of(deal_id, "g")
    result = await run(
        app, GROUP, deal_keys(show_id), "settle", deal_id,
        now_ms(app) if now is None else now, "1" if force else "0",
    )  # fmt: skip
    if result["outcome"] == "unknown_deal":
        raise not_found("group_buy_not_found", f"no group buy {deal_id!r}")
    await _publish_events(app, show_id, result)
    return result


async def end_deal(app: web.Application, claims: Claims, deal_id: Any) -> dict[str, Any]:
    own_show(claims, deal_id, "g", "deal_id")
    staff_only(claims, "end a group buy")
    await settle(app, deal_id, force=True)
    return await get_deal(app, deal_id)


async def tick(
    app: web.Application, show_id: str, deal_ids: list[str], memo: dict[str, Any], now: int
) -> None:
    """Close windows that ended; broadcast progress when it changed."""
    for deal_id in deal_ids:
        deal = await get_deal(app, deal_id, now)
        group = deal["open_group"]
        if deal["status"] == "ended" or (group and now >= group["ends_at"]):
            await settle(app, deal_id, now)
            deal = await get_deal(app, deal_id, now)
        progress = progress_fields(deal)
        if memo.get(deal_id) != progress:
            memo[deal_id] = progress
            await publish(app, show_id, {"type": "group.progress", **progress})
        if deal["closed"]:
            memo.pop(deal_id, None)


# -- HTTP and WebSocket --------------------------------------------------------------------


async def handle_get(request: web.Request) -> web.Response:
    deal_id = request.match_info["deal_id"]
    deal = await get_deal(request.app, deal_id)
    return web.json_response({"deal": deal, "groups": await list_groups(request.app, deal_id)})


async def handle_join(request: web.Request) -> web.Response:
    deal_id = request.match_info["deal_id"]
    claims = await authenticate(request, ck.show_of(deal_id, "g"))
    return web.json_response(await join(request.app, claims, deal_id))


async def handle_leave(request: web.Request) -> web.Response:
    deal_id = request.match_info["deal_id"]
    claims = await authenticate(request, ck.show_of(deal_id, "g"))
    return web.json_response(await leave(request.app, claims, deal_id))


async def handle_end(request: web.Request) -> web.Response:
    deal_id = request.match_info["deal_id"]
    claims = await authenticate(request, ck.show_of(deal_id, "g"))
    return web.json_response({"deal": await end_deal(request.app, claims, deal_id)})


DEAL_ID = Annotated[str, Meta(max_length=80, description="the group-buy deal")]


class GroupJoin(Message, tag="group.join"):
    """Join the open group of a deal (holds a unit). Replied with `{outcome, deal_id, group, joined, size, ends_at}`: `joined`, `formed` (you completed it: `reservation_id`), `already_joined`, `sold_out`, `ended`, `not_started`."""

    deal_id: DEAL_ID


async def ws_join(app: web.Application, claims: Claims, body: GroupJoin) -> dict[str, Any]:
    return await join(app, claims, body.deal_id)


class GroupLeave(Message, tag="group.leave"):
    """Leave a group that has not formed yet (the held unit is released). Replied with `{outcome, deal_id}`: `left`, `not_joined`, `already_formed`."""

    deal_id: DEAL_ID


async def ws_leave(app: web.Application, claims: Claims, body: GroupLeave) -> dict[str, Any]:
    return await leave(app, claims, body.deal_id)


class GroupEnd(Message, tag="group.end"):
    """Staff: end a deal now (an open group short of its size fails). Replied with `{deal}`."""

    deal_id: DEAL_ID


async def ws_end(app: web.Application, claims: Claims, body: GroupEnd) -> dict[str, Any]:
    return {"deal": await end_deal(app, claims, body.deal_id)}


COMMANDS = (
    Command(GroupJoin, ws_join),
    Command(GroupLeave, ws_leave),
    Command(GroupEnd, ws_end, roles=STAFF, refusal="role '{role}' may not end a group buy"),
)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/group-buys/{deal_id}/join", handle_join)
    app.router.add_post("/api/group-buys/{deal_id}/leave", handle_leave)
    app.router.add_post("/api/shows/{show_id}/group-buys", create_route(create_deal, "deal"))
    app.router.add_get("/api/shows/{show_id}/group-buys", list_route(list_deals, "deals"))
    app.router.add_get("/api/group-buys/{deal_id}", handle_get)
    app.router.add_post("/api/group-buys/{deal_id}/end", handle_end)
    register(app, COMMERCE_COMMANDS, COMMANDS)

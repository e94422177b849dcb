"""Coupons: the host drops a limited number, viewers claim one each (first come), checkout applies it.

Claiming is one Lua call (``coupon_claim.lua``) that checks expiry, the one-per-user rule and
the count together; paying with ``coupon_id`` marks the claim used in the same script that
starts the payment, and a failed payment gives the coupon back.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from ..appkeys import REDIS
from ..auth import STAFF, Claims, authenticate
from ..clock import now_ms
from ..errors import bad_request, forbidden, not_found, read_json
from ..protocol import Command, Message, register
from ..redis.broker import publish
from ..shows import get_show
from . import fields
from . import keys as ck
from .activity import touch
from .fields import COMMERCE_COMMANDS
from .scripts import COUPON_CLAIM


async def get_coupon(app: web.Application, coupon_id: str) -> dict[str, Any]:
    show_id = ck.show_of(coupon_id, "c")
    raw, left = await app[REDIS].hmget(
        ck.coupons(show_id), [f"{coupon_id}:def", f"{coupon_id}:left"]
    )
    if raw is None:
        raise not_found("coupon_not_found", f"no coupon {coupon_id!r}")
    coupon = json.loads(raw)
    coupon["left"] = int(left or 0)
    coupon["expired"] = now_ms(app) >= coupon["expires_at"]
    return coupon


# Expired coupons stay in the listing this long, so a late joiner still sees "ended" / their claim.
RECENT_MS = 120_000


async def list_coupons(app: web.Application, show_id: str, user_id: str) -> list[dict[str, Any]]:
    """The show's coupons still claimable or ended less than :data:`RECENT_MS` ago, oldest first.

    Each is the coupon of :func:`get_coupon` plus ``claimed`` / ``used`` for ``user_id``.
    """
    redis = app[REDIS]
    now = now_ms(app)
    data = await redis.hgetall(ck.coupons(show_id))
    coupons = []
    for name, raw in data.items():
        if not name.endswith(":def"):
            continue
        coupon = json.loads(raw)
        if now >= coupon["expires_at"] + RECENT_MS:
            continue
        coupon["left"] = int(data.get(f"{coupon['id']}:left") or 0)
        coupon["expired"] = now >= coupon["expires_at"]
        coupons.append(coupon)
    coupons.sort(key=lambda c: int(c["id"].rsplit(".c", 1)[1]))
    if coupons:
        states = await redis.hmget(
            ck.coupon_claims(show_id), [f"{c['id']}|{user_id}" for c in coupons]
        )
        for coupon, state in zip(coupons, states, strict=True):
            coupon["claimed"] = state is not None
            coupon["used"] = bool(state and state.startswith("used"))
    return coupons


async def create_coupon(app: web.Application, show_id: str, body: dict[str, Any]) -> dict[str, Any]:
    title = fields.text(body, "title", 80, default="Live coupon") or "Live coupon"
    percent = fields.integer(body, "percent_off", 0, 100, default=0)
    amount = fields.integer(body, "amount_off", 0, 100_000_000, default=0)
    if (percent > 0) == (amount > 0):
        raise bad_request(
            "bad_field",
            "give exactly one of percent_off (1-100) or amount_off (> 0)",
            field="percent_off",
        )
    currency = fields.currency(body)
    count = fields.integer(body, "count", 1, 1_000_000)
    expires_in = fields.integer(body, "expires_in_s", 1, 7 * 24 * 3600, default=600)
    redis = app[REDIS]
    coupon_id = f"{show_id}.c{await redis.hincrby(ck.seq(show_id), 'coupon', 1)}"
    expires_at = now_ms(app) + expires_in * 1000
    coupon = {
        "id": coupon_id,
        "show_id": show_id,
        "title": title,
        "percent_off": percent,
        "amount_off": amount,
        "currency": currency,
        "count": count,
        "expires_at": expires_at,
    }
    await redis.hset(
        ck.coupons(show_id),
        mapping={
            f"{coupon_id}:def": json.dumps(coupon),
            f"{coupon_id}:left": count,
            f"{coupon_id}:expires": expires_at,
            f"{coupon_id}:percent_off": percent,
            f"{coupon_id}:amount_off": amount,
            f"{coupon_id}:currency": currency,
        },
    )
    await touch(app, show_id)
    await publish(app, show_id, {"type": "coupon.dropped", "coupon": {**coupon, "left": count}})
    return {**coupon, "left": count, "expired": False}


async def claim(app: web.Application, claims: Claims, coupon_id: Any) -> dict[str, Any]:
    """``{"outcome": claimed | already_claimed | exhausted | expired, "coupon_id", "left"}``."""
    if not isinstance(coupon_id, str):
        raise bad_request("bad_field", "coupon_id is required", field="coupon_id")
    show_id = ck.show_of(coupon_id, "c")
    if show_id != claims.show_id:
        raise forbidden("token is for another show")
    outcome, left = await COUPON_CLAIM(
        app, [ck.coupons(show_id), ck.coupon_claims(show_id)], [coupon_id, claims.user_id]
    )
    if outcome == "unknown_coupon":
        raise not_found("coupon_not_found", f"no coupon {coupon_id!r}")
    return {"outcome": outcome, "coupon_id": coupon_id, "left": int(left)}


async def handle_create(request: web.Request) -> web.Response:
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    await authenticate(request, show_id, STAFF)
    coupon = await create_coupon(request.app, show_id, await read_json(request))
    return web.json_response({"coupon": coupon}, status=201)


async def handle_list(request: web.Request) -> web.Response:
    show_id = request.match_info["show_id"]
    claims = await authenticate(request, show_id)
    await get_show(request.app, show_id)
    return web.json_response({"coupons": await list_coupons(request.app, show_id, claims.user_id)})


async def handle_get(request: web.Request) -> web.Response:
    return web.json_response(
        {"coupon": await get_coupon(request.app, request.match_info["coupon_id"])}
    )


async def handle_claim(request: web.Request) -> web.Response:
    coupon_id = request.match_info["coupon_id"]
    claims = await authenticate(request, ck.show_of(coupon_id, "c"))
    return web.json_response(await claim(request.app, claims, coupon_id))


class CouponClaim(Message, tag="coupon.claim"):
    """Claim a dropped coupon. Replied with `{outcome, coupon_id, left}`: `claimed`, `already_claimed`, `exhausted`, `expired`."""

    coupon_id: Annotated[str, Meta(description="the coupon (`SHOW.c1`)")]


async def ws_claim(app: web.Application, claims: Claims, body: CouponClaim) -> dict[str, Any]:
    return await claim(app, claims, body.coupon_id)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/shows/{show_id}/coupons", handle_create)
    app.router.add_get("/api/shows/{show_id}/coupons", handle_list)
    app.router.add_get("/api/coupons/{coupon_id}", handle_get)
    app.router.add_post("/api/coupons/{coupon_id}/claim", handle_claim)
    register(app, COMMERCE_COMMANDS, [Command(CouponClaim, ws_claim)])

"""Products of a show: create, update, delete, pin (at most 3), clicks.

A product is JSON in ``{show}:products`` with its stock beside it in ``{show}:stock`` (a sale
takes its quantity out of that stock atomically). Pinning is a Lua check-and-add so two hosts
pinning at once never exceed the limit. Every pin change is broadcast with the pinned list.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from .. import insight
from ..appkeys import REDIS
from ..auth import STAFF, Claims, authenticate
from ..errors import ApiError, bad_request, conflict, not_found, read_json
from ..protocol import Command, Message, register
from ..redis import keys as base
from ..redis.broker import publish
from ..shows import get_show
from . import fields
from . import keys as ck
from .activity import touch
from .fields import COMMERCE_COMMANDS
from .scripts import PIN

MAX_PINNED = 3
MAX_PRICE = 100_000_000_00
MAX_STOCK = 10_000_000
IMAGE_PREFIXES = ("https://", "http://", "/static/", "data:image/")


def _image(body: dict[str, Any], default: str = "") -> str:
    value = body.get("image", default)
    if (
        not isinstance(value, str)
        or len(value) > 60_000
        or (value and not value.startswith(IMAGE_PREFIXES))
    ):
        raise bad_request(
            "bad_field",
            "image must be an http(s) URL, a /static/ path or a data:image/ URI",
            field="image",
        )
    return value


async def get_product(app: web.Application, product_id: str) -> dict[str, Any]:
    """The product with its stock and pin state, or 404 ``product_not_found``."""
    show_id = ck.show_of(product_id, "p")
    redis = app[REDIS]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(ck.products(show_id), product_id)
        pipe.hget(ck.stock(show_id), product_id)
        pipe.zscore(ck.pinned(show_id), product_id)
        raw, stock, pinned = await pipe.execute()
    if not raw:
        raise not_found("product_not_found", f"no product {product_id!r}")
    return {**json.loads(raw), "stock": int(stock or 0), "pinned": pinned is not None}


async def list_products(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    redis = app[REDIS]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(ck.products(show_id))
        pipe.hgetall(ck.stock(show_id))
        pipe.zrange(ck.pinned(show_id), 0, -1)
        raw, stock, pinned = await pipe.execute()
    items = []
    for pid, data in raw.items():
        items.append({**json.loads(data), "stock": int(stock.get(pid, 0)), "pinned": pid in pinned})
    items.sort(key=lambda p: int(p["id"].rsplit(".p", 1)[1]))
    return items


async def pinned_products(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    """Pinned products (oldest pin first) with price and stock left."""
    redis = app[REDIS]
    pids = await redis.zrange(ck.pinned(show_id), 0, -1)
    if not pids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(ck.products(show_id), pids)
        pipe.hmget(ck.stock(show_id), pids)
        raw, stock = await pipe.execute()
    return [
        {**json.loads(data), "stock": int(left or 0), "pinned": True}
        for data, left in zip(raw, stock, strict=True)
        if data
    ]


async def broadcast_pinned(app: web.Application, show_id: str) -> None:
    await publish(app, show_id, {"type": "products", "pinned": await pinned_products(app, show_id)})


async def create_product(
    app: web.Application, show_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Validate everything first, then write once: no half-made product."""
    product = {
        "title": fields.text(body, "title", 120),
        "description": fields.text(body, "description", 2000, default=""),
        "image": _image(body),
        "price": fields.integer(body, "price", 1, MAX_PRICE),
        "currency": fields.currency(body),
    }
    stock = fields.integer(body, "stock", 0, MAX_STOCK)
    redis = app[REDIS]
    product_id = f"{show_id}.p{await redis.hincrby(ck.seq(show_id), 'product', 1)}"
    product = {
        "id": product_id,
        "show_id": show_id,
        **product,
        "created_at": int(time.time() * 1000),
    }
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(ck.products(show_id), product_id, json.dumps(product))
        pipe.hset(ck.stock(show_id), product_id, stock)
        await pipe.execute()
    await touch(app, show_id)
    return {**product, "stock": stock, "pinned": False}


async def handle_create(request: web.Request) -> web.Response:
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    await authenticate(request, show_id, STAFF)
    product = await create_product(request.app, show_id, await read_json(request))
    return web.json_response({"product": product}, status=201)


async def handle_list(request: web.Request) -> web.Response:
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    items = await list_products(request.app, show_id)
    return web.json_response({"products": items, "pinned": [p for p in items if p["pinned"]]})


async def handle_get(request: web.Request) -> web.Response:
    return web.json_response(
        {"product": await get_product(request.app, request.match_info["product_id"])}
    )


async def handle_update(request: web.Request) -> web.Response:
    product_id = request.match_info["product_id"]
    show_id = ck.show_of(product_id, "p")
    await authenticate(request, show_id, STAFF)
    current = await get_product(request.app, product_id)
    body = await read_json(request)
    unknown = set(body) - {"title", "description", "image", "price", "currency", "stock"}
    if unknown:
        raise bad_request("bad_field", f"unknown fields: {', '.join(sorted(unknown))}")
    update: dict[str, Any] = {}
    if "title" in body:
        update["title"] = fields.text(body, "title", 120)
    if "description" in body:
        update["description"] = fields.text(body, "description", 2000, default="")
    if "image" in body:
        update["image"] = _image(body)
    if "price" in body:
        update["price"] = fields.integer(body, "price", 1, MAX_PRICE)
    if "currency" in body:
        update["currency"] = fields.currency(body)
    stock = fields.integer(body, "stock", 0, MAX_STOCK) if "stock" in body else None
    stored = {k: v for k, v in current.items() if k not in ("stock", "pinned")} | update
    redis = request.app[REDIS]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(ck.products(show_id), product_id, json.dumps(stored))
        if stock is not None:
            pipe.hset(ck.stock(show_id), product_id, stock)
        await pipe.execute()
    product = await get_product(request.app, product_id)
    if product["pinned"]:
        await broadcast_pinned(request.app, show_id)
    return web.json_response({"product": product})


async def handle_delete(request: web.Request) -> web.Response:
    product_id = request.match_info["product_id"]
    show_id = ck.show_of(product_id, "p")
    await authenticate(request, show_id, STAFF)
    product = await get_product(request.app, product_id)
    redis = request.app[REDIS]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(ck.products(show_id), product_id)
        pipe.hdel(ck.stock(show_id), product_id)
        pipe.zrem(ck.pinned(show_id), product_id)
        await pipe.execute()
    if product["pinned"]:
        await publish(request.app, show_id, {"type": "product.unpinned", "product_id": product_id})
        await broadcast_pinned(request.app, show_id)
    return web.json_response({"deleted": product_id})


async def pin(app: web.Application, product_id: str) -> dict[str, Any]:
    show_id = ck.show_of(product_id, "p")
    outcome = await PIN(app, [ck.products(show_id), ck.pinned(show_id)], [product_id, MAX_PINNED])
    if outcome == "unknown_product":
        raise not_found("product_not_found", f"no product {product_id!r}")
    if outcome == "pin_limit":
        raise conflict("pin_limit", f"at most {MAX_PINNED} products can be pinned; unpin one first")
    product = await get_product(app, product_id)
    if outcome == "pinned":
        await insight.pinned(app, show_id, product_id)
        await publish(app, show_id, {"type": "product.pinned", "product": product})
        await broadcast_pinned(app, show_id)
    return product


async def handle_pin(request: web.Request) -> web.Response:
    product_id = request.match_info["product_id"]
    await authenticate(request, ck.show_of(product_id, "p"), STAFF)
    return web.json_response({"product": await pin(request.app, product_id)})


async def handle_unpin(request: web.Request) -> web.Response:
    product_id = request.match_info["product_id"]
    show_id = ck.show_of(product_id, "p")
    await authenticate(request, show_id, STAFF)
    await get_product(request.app, product_id)
    if await request.app[REDIS].zrem(ck.pinned(show_id), product_id):
        await publish(request.app, show_id, {"type": "product.unpinned", "product_id": product_id})
        await broadcast_pinned(request.app, show_id)
    return web.json_response({"product": await get_product(request.app, product_id)})


async def click(app: web.Application, claims: Claims, product_id: Any) -> dict[str, Any]:
    """Count a product click (stats and the funnel's "clicked" stage)."""
    if not isinstance(product_id, str):
        raise bad_request("bad_field", "product_id is required", field="product_id")
    show_id = ck.show_of(product_id, "p")
    if show_id != claims.show_id:
        raise ApiError(403, "forbidden", "token is for another show")
    redis = app[REDIS]
    if not await redis.hexists(ck.products(show_id), product_id):
        raise not_found("product_not_found", f"no product {product_id!r}")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(base.counters(show_id), "product_clicks", 1)
        pipe.hincrby(ck.product_clicks(show_id), product_id, 1)
        pipe.sadd(ck.funnel(show_id, "clicked"), claims.user_id)
        await pipe.execute()
    await insight.action(app, show_id, "clicked", claims.user_id, product_id)
    return {"product_id": product_id, "clicked": True}


async def handle_click(request: web.Request) -> web.Response:
    product_id = request.match_info["product_id"]
    claims = await authenticate(request, ck.show_of(product_id, "p"))
    return web.json_response(await click(request.app, claims, product_id))


class ProductClick(Message, tag="product.click"):
    """Count a click on a product card (stats, the funnel's "clicked" stage). Replied with `{product_id, clicked: true}`."""

    product_id: Annotated[str, Meta(description="the product (`SHOW.p1`)")]


async def ws_click(app: web.Application, claims: Claims, body: ProductClick) -> dict[str, Any]:
    return await click(app, claims, body.product_id)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/shows/{show_id}/products", handle_create)
    app.router.add_get("/api/shows/{show_id}/products", handle_list)
    app.router.add_get("/api/products/{product_id}", handle_get)
    app.router.add_patch("/api/products/{product_id}", handle_update)
    app.router.add_delete("/api/products/{product_id}", handle_delete)
    app.router.add_post("/api/products/{product_id}/pin", handle_pin)
    app.router.add_delete("/api/products/{product_id}/pin", handle_unpin)
    app.router.add_post("/api/products/{product_id}/click", handle_click)
    register(app, COMMERCE_COMMANDS, [Command(ProductClick, ws_click)])

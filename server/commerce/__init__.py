"""Commerce in the stream: products, flash sales, checkout and orders, coupons, giveaways, stats.

``setup(app)`` registers the routes, the WebSocket commands (``buy``, ``coupon.claim``,
``lottery.enter``, ``product.click``, and the interactive ``auction.*``, ``group.*``, ``poll.*``),
the background tasks (order consumer, per-show timers)
and the demo seeder. See docs/protocol.md "## Commerce".
"""

from __future__ import annotations

from aiohttp import web

from ..appkeys import DEMO_SEEDERS
from ..protocol import register
from ..ws.hub import RESYNC_SOURCES
from . import (
    auctions,
    coupons,
    group_buys,
    interactive,
    lottery,
    orders,
    polls,
    products,
    sales,
    stats,
)
from .demo import seed_products
from .fields import COMMERCE_EVENTS
from .messages import EVENTS
from .payments import payments_ctx
from .ticker import ticker_ctx


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(interactive.scripts_ctx)
    app.cleanup_ctx.append(payments_ctx)
    for part in (products, sales, orders, coupons, lottery, stats, polls, auctions, group_buys):
        part.setup(app)
    app.cleanup_ctx.append(ticker_ctx)
    register(app, COMMERCE_EVENTS, events=EVENTS)
    app[DEMO_SEEDERS].append(seed_products)
    app[RESYNC_SOURCES] += [sales.resync_events, lottery.resync_events]

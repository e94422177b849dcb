"""Commerce Redis keys and ids.

Every key of a show shares the ``{show:ID}`` hash tag (see :mod:`server.redis.keys`), so each Lua
script below touches one Cluster slot and declares all of its keys through KEYS. Ids of
sales, reservations, coupons and lotteries start with the show id (``SHOW.s3``, ``SHOW.r42``)
so a global route such as ``/api/sales/{id}`` finds its show without a lookup.
"""

from __future__ import annotations

import re

from ..errors import not_found
from ..redis import keys as base

# Sorted set show id → "active until" (ms); single-key ops only (no hash tag).
COMMERCE_SHOWS = "liveshop:commerce:active"

ID_RE = re.compile(r"^([A-Za-z0-9_-]{1,64})\.([psrclagq])([0-9]{1,12})$")
KIND_NAMES = {
    "p": "product", "s": "sale", "r": "order", "c": "coupon", "l": "lottery",
    "a": "auction", "g": "group_buy", "q": "poll",
}  # fmt: skip


def show_of(entity_id: str, kind: str) -> str:
    """The show id inside ``entity_id`` of ``kind`` (p/s/r/c/l), or 404 ``<kind>_not_found``."""
    match = ID_RE.fullmatch(entity_id)
    if not match or match.group(2) != kind:
        name = KIND_NAMES[kind]
        raise not_found(f"{name}_not_found", f"no {name} {entity_id!r}")
    return match.group(1)


def k(show_id: str, *parts: str) -> str:
    """``{show:ID}:shop:…``: commerce keys live under their own prefix (no clash with chat's ``pinned``)."""
    return base.show_key(show_id, "shop", *parts)


def seq(show_id: str) -> str:
    """Hash of id counters: product, sale, reservation, coupon, lottery."""
    return k(show_id, "seq")


def products(show_id: str) -> str:
    """Hash product id → JSON (title, description, image, price, currency)."""
    return k(show_id, "products")


def stock(show_id: str) -> str:
    """Hash product id → units in stock not yet given to a sale."""
    return k(show_id, "stock")


def pinned(show_id: str) -> str:
    """Sorted set of pinned product ids by pin time (at most 3).

    Not ``pinned``: :func:`server.redis.keys.pinned` is the pinned chat message (a hash).
    """
    return k(show_id, "pinned_products")


def product_clicks(show_id: str) -> str:
    """Hash product id → clicks."""
    return k(show_id, "product_clicks")


def sales(show_id: str) -> str:
    """Hash ``SALE:field`` → value for every sale of the show (start, end, limit, left, reserved, sold, …)."""
    return k(show_id, "sales")


def sale_users(show_id: str) -> str:
    """Hash ``SALE|USER`` → units the user holds (live reservations + paid)."""
    return k(show_id, "sale_users")


def buy_keys(show_id: str) -> str:
    """Hash ``SALE|USER|KEY`` → first outcome of that buy attempt (idempotency)."""
    return k(show_id, "buy_keys")


def reservations(show_id: str) -> str:
    """Hash reservation id → JSON (the authoritative order state)."""
    return k(show_id, "reservations")


def expiries(show_id: str) -> str:
    """Sorted set reservation id → expiry (ms) driving the sweeper."""
    return k(show_id, "expiries")


def pay_keys(show_id: str) -> str:
    """Hash ``RESERVATION|KEY`` → the JSON answer of that payment attempt."""
    return k(show_id, "pay_keys")


def funnel(show_id: str, stage: str) -> str:
    """Set of users who reached ``stage`` (clicked, reserved, paid)."""
    return k(show_id, "funnel", stage)


def coupons(show_id: str) -> str:
    """Hash ``COUPON:field`` → value (def JSON, left, expires)."""
    return k(show_id, "coupons")


def coupon_claims(show_id: str) -> str:
    """Hash ``COUPON|USER`` → claimed | used:RESERVATION."""
    return k(show_id, "coupon_claims")


def order_records(show_id: str) -> str:
    """Hash reservation id → order record JSON, built by the orders consumer group."""
    return k(show_id, "order_records")


def order_index(show_id: str) -> str:
    """Sorted set reservation id → created (ms): the order listing."""
    return k(show_id, "order_index")


def sale_order_index(show_id: str, sale_id: str) -> str:
    """Sorted set reservation id → created (ms) of one sale: the listing filtered by sale."""
    return k(show_id, "order_index", sale_id)


def sale_order_indexes_built(show_id: str) -> str:
    """Flag: the per-sale order indexes hold every order (orders applied before they existed too)."""
    return k(show_id, "order_index_by_sale")


def lotteries(show_id: str) -> str:
    """Hash lottery id → JSON state (public fields + secret seed until the draw)."""
    return k(show_id, "lotteries")


def lottery_entries(show_id: str, lottery_id: str) -> str:
    """Hash user id → name: explicit entries of one lottery."""
    return k(show_id, "lottery", lottery_id, "entries")


def lottery_lock(show_id: str, lottery_id: str) -> str:
    return k(show_id, "lottery", lottery_id, "draw")


def leader(show_id: str) -> str:
    """Which node runs the show's timers (sale ticks, stats, sweeper, draws)."""
    return k(show_id, "commerce_leader")


def buy_script_keys(show_id: str) -> list[str]:
    return [
        sales(show_id),
        sale_users(show_id),
        buy_keys(show_id),
        reservations(show_id),
        expiries(show_id),
        base.orders_stream(show_id),
        base.counters(show_id),
        funnel(show_id, "reserved"),
        seq(show_id),
    ]


def order_script_keys(show_id: str) -> list[str]:
    return [
        sales(show_id),
        sale_users(show_id),
        reservations(show_id),
        expiries(show_id),
        base.orders_stream(show_id),
        base.counters(show_id),
        funnel(show_id, "paid"),
        pay_keys(show_id),
        coupon_claims(show_id),
        coupons(show_id),
    ]


# -- interactive commerce (issue 18): auctions, group buys, polls ------------------------------


def interactive_live(show_id: str) -> str:
    """Set of open auction / group-buy / poll ids: what the show's timers look at each tick."""
    return k(show_id, "interactive_live")


def polls(show_id: str) -> str:
    """Hash ``POLL:field`` → value (def JSON, n, changeable, start, end, status, total, t:I tallies, final)."""
    return k(show_id, "polls")


def poll_votes(show_id: str) -> str:
    """Hash ``POLL|USER`` → option index the user voted for."""
    return k(show_id, "poll_votes")


def auctions(show_id: str) -> str:
    """Hash ``AUCTION:field`` → value (prices, leader, ceiling, bids, end, cap, status, winner)."""
    return k(show_id, "auctions")


def auction_keys(show_id: str) -> str:
    """Hash ``AUCTION|USER|KEY`` → first answer of that bid (idempotency)."""
    return k(show_id, "auction_keys")


def auction_bids(show_id: str) -> str:
    """List of every decided bid of the show's auctions (JSON), the audit trail the invariants are checked on."""
    return k(show_id, "auction_bids")


def group_deals(show_id: str) -> str:
    """Hash ``DEAL:field`` → value (def, size, window, end, status, held, current group)."""
    return k(show_id, "group_deals")


def group_members(show_id: str) -> str:
    """Hash ``DEAL|USER`` → number of the group (open or formed) the user is in."""
    return k(show_id, "group_members")


def groups(show_id: str) -> str:
    """Hash ``DEAL#N`` → JSON of group N (status open/formed/failed, members, opened, ends)."""
    return k(show_id, "groups")


def order_keys(show_id: str) -> list[str]:
    """What a script creating a reservation touches (the same keys ``buy.lua`` writes)."""
    return [
        sales(show_id),
        sale_users(show_id),
        reservations(show_id),
        expiries(show_id),
        base.orders_stream(show_id),
        base.counters(show_id),
        funnel(show_id, "reserved"),
    ]

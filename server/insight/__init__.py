"""Host insight: dwell time, interaction rate, per-product funnel, GMV per minute, the report.

Everything lives in Redis under the show's hash tag so every node adds to the same numbers and
any node can read them. Memory stays bounded: per-minute HyperLogLogs and counters (one key per
minute of show), a bucketed dwell histogram, and one small field per viewer that ever joined
(needed to merge a reconnect into the session it continues). Other features add their own
interactions with :func:`action` (``bid`` and ``voted`` are reserved for auctions and polls).

The hooks in the rest of the code are one line each and never raise: insight must not break
chat, buying or a WebSocket session.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from ..appkeys import REDIS, SETTINGS
from ..auth import Claims
from ..redis import keys as base
from ..redis import lua

log = logging.getLogger("liveshop.insight")

# Upper edges (seconds) of the dwell buckets; the first one is the bounce threshold.
BUCKET_EDGES_S = (10, 30, 60, 120, 300, 600, 1800, 3600)
KINDS = ("chatted", "liked", "clicked", "bought", "paid", "bid", "voted")
SESSIONS = lua.Script(Path(__file__).with_name("sessions.lua"))


def _k(show_id: str, *parts: str) -> str:
    return base.show_key(show_id, "insight", *parts)


def _now_ms(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


def _minute(now_ms: int) -> int:
    return now_ms // 60_000


def bucket_labels() -> list[str]:
    """``<10s``, ``10-30s`` … ``>=3600s``: the dwell histogram's buckets, in order."""
    labels, low = [], 0
    for edge in BUCKET_EDGES_S:
        labels.append(f"<{edge}s" if low == 0 else f"{low}-{edge}s")
        low = edge
    return [*labels, f">={low}s"]


# -- recording ------------------------------------------------------------------------------


async def _session(app: web.Application, op: str, show_id: str, user_id: str, now: int) -> None:
    settings = app[SETTINGS]
    await SESSIONS(
        app,
        [
            _k(show_id, "sessions"),
            _k(show_id, "dwell"),
            _k(show_id, "viewers"),
            _k(show_id, "present", str(_minute(now))),
            _k(show_id, "minutes"),
        ],
        [
            op,
            user_id,
            now,
            int(settings.insight_reconnect_grace_s * 1000),
            settings.insight_ttl_s,
            _minute(now),
            *(edge * 1000 for edge in BUCKET_EDGES_S),
        ],
    )


async def joined(
    app: web.Application, show_id: str, claims: Claims, now_ms: int | None = None
) -> None:
    """A viewer's connection is live: start (or continue) their session; impressions of pins."""
    if claims.is_staff:
        return
    try:
        now = _now_ms(now_ms)
        await _session(app, "join", show_id, claims.user_id, now)
        from ..commerce import keys as ck

        redis = app[REDIS]
        pinned = await redis.zrange(ck.pinned(show_id), 0, -1)
        if pinned:
            async with redis.pipeline(transaction=False) as pipe:
                for product_id in pinned:
                    pipe.pfadd(_k(show_id, "funnel", product_id, "impressions"), claims.user_id)
                await pipe.execute()
    except Exception:
        log.exception("insight join failed for %s", show_id)


async def left(
    app: web.Application, show_id: str, claims: Claims, now_ms: int | None = None
) -> None:
    """A viewer's connection closed: their session ends unless another one is still open."""
    if claims.is_staff:
        return
    try:
        await _session(app, "leave", show_id, claims.user_id, _now_ms(now_ms))
    except Exception:
        log.exception("insight leave failed for %s", show_id)


async def action(
    app: web.Application,
    show_id: str,
    kind: str,
    user_id: str,
    product_id: str | None = None,
    now_ms: int | None = None,
) -> None:
    """Count one interaction of ``kind`` (see :data:`KINDS`) by ``user_id``, for the funnel too."""
    try:
        now = _now_ms(now_ms)
        minute = str(_minute(now))
        ttl = app[SETTINGS].insight_ttl_s
        names = [
            _k(show_id, "act", kind),
            _k(show_id, "act", kind, minute),
            _k(show_id, "act", "any"),
            _k(show_id, "act", "any", minute),
        ]
        stage = {"clicked": "clicks", "bought": "reservations", "paid": "paid"}.get(kind)
        if product_id and stage:
            names.append(_k(show_id, "funnel", product_id, stage))
        async with app[REDIS].pipeline(transaction=False) as pipe:
            for name in names:
                pipe.pfadd(name, user_id)
                pipe.expire(name, ttl)
            pipe.hincrby(_k(show_id, "actions"), kind, 1)
            pipe.expire(_k(show_id, "actions"), ttl)
            if product_id:
                pipe.sadd(_k(show_id, "products"), product_id)
                pipe.expire(_k(show_id, "products"), ttl)
            await pipe.execute()
    except Exception:
        log.exception("insight action %s failed for %s", kind, show_id)


async def reserved(app: web.Application, show_id: str, user_id: str, sale_id: str) -> None:
    """A buy attempt got a unit: the ``bought`` interaction and the product's reservation stage."""
    from ..commerce import keys as ck

    try:
        product_id = await app[REDIS].hget(ck.sales(show_id), f"{sale_id}:product")
    except Exception:
        log.exception("insight reserved failed for %s", show_id)
        return
    await action(app, show_id, "bought", user_id, product_id)


async def paid(
    app: web.Application, show_id: str, order: dict[str, Any], now_ms: int | None = None
) -> None:
    """An order was paid: the ``paid`` stage and GMV of its minute."""
    now = _now_ms(now_ms)
    await action(app, show_id, "paid", order["user_id"], order.get("product_id"), now)
    try:
        name = _k(show_id, "gmv")
        async with app[REDIS].pipeline(transaction=False) as pipe:
            pipe.hincrby(name, f"{_minute(now)}:{order['currency']}", int(order["amount"]))
            pipe.expire(name, app[SETTINGS].insight_ttl_s)
            await pipe.execute()
    except Exception:
        log.exception("insight paid failed for %s", show_id)


async def viewers_now(app: web.Application, show_id: str) -> list[str]:
    """Users connected now on any node who are viewers (staff have no session, so are left out)."""
    from ..realtime.presence import present_users

    users = [uid for uid, _ in await present_users(app, show_id)]
    if not users:
        return []
    raw = await app[REDIS].hmget(_k(show_id, "sessions"), users)
    return [uid for uid, v in zip(users, raw, strict=True) if v and not v.startswith("0:")]


async def pinned(app: web.Application, show_id: str, product_id: str) -> None:
    """A product was pinned: everyone present now has seen it (an impression)."""
    try:
        users = await viewers_now(app, show_id)
        name = _k(show_id, "funnel", product_id, "impressions")
        async with app[REDIS].pipeline(transaction=False) as pipe:
            if users:
                pipe.pfadd(name, *users)
            pipe.sadd(_k(show_id, "products"), product_id)
            pipe.expire(name, app[SETTINGS].insight_ttl_s)
            pipe.expire(_k(show_id, "products"), app[SETTINGS].insight_ttl_s)
            await pipe.execute()
    except Exception:
        log.exception("insight pin failed for %s", show_id)


# -- reading --------------------------------------------------------------------------------


def _median_ms(counts: list[int], total: int) -> float | None:
    """The median from the histogram, interpolated linearly inside its bucket."""
    if total <= 0:
        return None
    half = total / 2
    seen, low = 0, 0
    edges = [e * 1000 for e in BUCKET_EDGES_S]
    for i, count in enumerate(counts):
        high = edges[i] if i < len(edges) else None
        if count and seen + count >= half:
            if high is None:  # open last bucket: its lower edge is the best we know
                return float(low)
            return low + (high - low) * (half - seen) / count
        seen += count
        low = high if high is not None else low
    return float(low)


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


async def insight(
    app: web.Application, show_id: str, now_ms: int | None = None, present: list[str] | None = None
) -> dict[str, Any]:
    """Dwell, interaction rate (last minute and over the show), funnel per product, GMV series.

    "Last minute" is the current clock minute and the one before it (per-minute keys); the
    viewers present then are those who joined in those minutes plus those connected now
    (``present``; read from presence when not given).
    """
    now = _now_ms(now_ms)
    minute = _minute(now)
    redis = app[REDIS]
    if present is None:
        present = await viewers_now(app, show_id)
    recent = [str(minute - 1), str(minute)]
    present_keys = [_k(show_id, "present", m) for m in recent]
    if present:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.pfadd(present_keys[1], *present)
            pipe.expire(present_keys[1], app[SETTINGS].insight_ttl_s)
            pipe.sadd(_k(show_id, "minutes"), recent[1])
            await pipe.execute()
    products = sorted(await redis.smembers(_k(show_id, "products")))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(_k(show_id, "dwell"))
        pipe.pfcount(_k(show_id, "viewers"))
        pipe.pfcount(*present_keys)
        pipe.hgetall(_k(show_id, "actions"))
        pipe.hgetall(_k(show_id, "gmv"))
        for kind in ("any", *KINDS):
            pipe.pfcount(_k(show_id, "act", kind))
            pipe.pfcount(*(_k(show_id, "act", kind, m) for m in recent))
        for product_id in products:
            for stage in ("impressions", "clicks", "reservations", "paid"):
                pipe.pfcount(_k(show_id, "funnel", product_id, stage))
        dwell, viewers, recent_viewers, actions, gmv, *rest = await pipe.execute()
    n = len(BUCKET_EDGES_S) + 1
    counts = [int(dwell.get(f"b{i}", 0)) for i in range(1, n + 1)]
    sessions = int(dwell.get("count", 0))
    total_ms = int(dwell.get("sum_ms", 0))
    median = _median_ms(counts, sessions)
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in ("any", *KINDS):
        show_count, minute_count = int(rest.pop(0)), int(rest.pop(0))
        by_kind[kind] = {
            "show": show_count,
            "show_rate": _ratio(show_count, viewers),
            "last_minute": minute_count,
            "last_minute_rate": _ratio(minute_count, recent_viewers),
        }
    funnel = []
    for product_id in products:
        imp, clicks, res, paid_n = (int(rest.pop(0)) for _ in range(4))
        funnel.append(
            {
                "product_id": product_id,
                "impressions": imp,
                "clicks": clicks,
                "reservations": res,
                "paid": paid_n,
                "click_rate": _ratio(clicks, imp),
                "reservation_rate": _ratio(res, clicks),
                "paid_rate": _ratio(paid_n, res),
            }
        )
    series: dict[str, dict[str, int]] = {}
    for field_name, amount in gmv.items():
        m, _, currency = field_name.partition(":")
        series.setdefault(currency, {})[str(int(m) * 60_000)] = int(amount)
    return {
        "dwell": {
            "sessions": sessions,
            "mean_s": round(total_ms / sessions / 1000, 3) if sessions else None,
            "median_s": round(median / 1000, 3) if median is not None else None,
            "bounce": int(dwell.get("bounce", 0)),
            "bounce_rate": _ratio(int(dwell.get("bounce", 0)), sessions),
            "buckets": dict(zip(bucket_labels(), counts, strict=True)),
        },
        "viewers_total": viewers,
        "viewers_last_minute": recent_viewers,
        "interaction": by_kind,
        "actions": {kind: int(actions.get(kind, 0)) for kind in KINDS},
        "funnel": funnel,
        "gmv_per_minute": {
            currency: dict(sorted(points.items(), key=lambda p: int(p[0])))
            for currency, points in series.items()
        },
    }


async def viewers_series(app: web.Application, show_id: str) -> dict[str, int]:
    """Distinct viewers present per minute (minute start ms → count), for the report's timeline."""
    redis = app[REDIS]
    minutes = sorted(int(m) for m in await redis.smembers(_k(show_id, "minutes")))
    if not minutes:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for m in minutes:
            pipe.pfcount(_k(show_id, "present", str(m)))
        counts = await pipe.execute()
    return {str(m * 60_000): int(c) for m, c in zip(minutes, counts, strict=True)}


def setup(app: web.Application) -> None:
    from . import alerts, report

    report.setup(app)
    alerts.setup(app)

"""Anomaly alerts for staff: viewers dropping fast, payment failures spiking, chat flood.

The show's commerce leader evaluates them with every stats push (~2 s). Each alert kind has a
state in Redis; a change of state is one atomic compare-and-set, so an alert fires once per
episode and clears once, whichever node evaluates. Every change is pushed to staff as an
``alert`` event and kept (the last :data:`KEEP` of them) for the studio and the report.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web

from .. import keys as base
from .. import lua
from ..appkeys import REDIS, SETTINGS
from ..broker import publish

log = logging.getLogger("liveshop.alerts")
KEEP = 200
# KEYS: 1 state hash. ARGV: 1 kind, 2 new state. Returns 1 when the state changed.
TRANSITION = lua.Script(
    source="""
local old = redis.call('HGET', KEYS[1], ARGV[1]) or 'clear'
if old == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
)


def _k(show_id: str, *parts: str) -> str:
    return base.show_key(show_id, "insight", "alerts", *parts)


async def payment_failed(app: web.Application, show_id: str, now_ms: int) -> None:
    """Count one failed charge in its minute (for the payment-failure alert)."""
    name = _k(show_id, "payfail", str(now_ms // 60_000))
    async with app[REDIS].pipeline(transaction=False) as pipe:
        pipe.incr(name)
        pipe.expire(name, 600)
        await pipe.execute()


async def bought_from(
    app: web.Application, show_id: str, ip: str | None, body: dict[str, Any]
) -> None:
    """Count a reservation by the buyer's address (HTTP buys) for the bot-buying alert."""
    if not ip or body.get("outcome") != "reserved":
        return
    try:
        name = _k(show_id, "ip_buys", str(int(time.time() // 60)))
        async with app[REDIS].pipeline(transaction=False) as pipe:
            pipe.hincrby(name, ip, 1)
            pipe.expire(name, 600)
            await pipe.execute()
    except Exception:
        log.exception("counting a buy by address failed for %s", show_id)


async def _conditions(
    app: web.Application, show_id: str, stats: dict[str, Any], now_ms: int
) -> dict[str, tuple[bool, str, dict[str, Any]]]:
    """kind → (firing, reason, the numbers behind it)."""
    settings = app[SETTINGS]
    redis = app[REDIS]
    window_ms = int(settings.alert_viewer_window_s * 1000)
    samples = _k(show_id, "viewers")
    minute = now_ms // 60_000
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(samples, {f"{now_ms}:{stats['viewers']}": now_ms})
        pipe.zremrangebyscore(samples, "-inf", now_ms - window_ms)
        pipe.expire(samples, 600)
        pipe.zrange(samples, 0, -1)
        pipe.mget([_k(show_id, "payfail", str(m)) for m in (minute - 1, minute)])
        for m in (minute - 1, minute):
            pipe.hgetall(_k(show_id, "ip_buys", str(m)))
        *_, members, fails, ips_before, ips_now = await pipe.execute()
    by_ip = {ip: int(n) for ip, n in ips_before.items()}
    for ip, n in ips_now.items():
        by_ip[ip] = by_ip.get(ip, 0) + int(n)
    top_ip, top_buys = max(by_ip.items(), key=lambda kv: kv[1], default=("", 0))
    counts = [int(m.partition(":")[2]) for m in members]
    peak = max(counts, default=0)
    viewers = int(stats["viewers"])
    drop = (peak - viewers) / peak if peak else 0.0
    failures = sum(int(f or 0) for f in fails)
    chat = float(stats["chat_per_minute"])
    conditions = {
        "viewers_drop": (
            peak >= settings.alert_viewer_min and drop >= settings.alert_viewer_drop,
            f"viewers fell {drop:.0%} in {settings.alert_viewer_window_s:g} s ({peak} → {viewers})",
            {"peak": peak, "viewers": viewers, "drop": round(drop, 4)},
        ),
        "payment_failures": (
            failures >= settings.alert_payment_failures,
            f"{failures} payments failed in the last minute",
            {"failures": failures, "threshold": settings.alert_payment_failures},
        ),
        "chat_flood": (
            chat >= settings.alert_chat_per_minute,
            f"{chat:g} chat messages per minute",
            {"chat_per_minute": chat, "threshold": settings.alert_chat_per_minute},
        ),
    }
    conditions["bot_buying"] = (
        top_buys >= settings.alert_buys_per_ip,
        f"{top_buys} units reserved from one address ({top_ip}) in the last minute",
        {"ip": top_ip, "buys": top_buys, "threshold": settings.alert_buys_per_ip},
    )
    conditions.update(await _sold_out_fast(app, show_id, now_ms))
    return conditions


async def _sold_out_fast(
    app: web.Application, show_id: str, now_ms: int
) -> dict[str, tuple[bool, str, dict[str, Any]]]:
    """One alert per sale that ran out of units within N s of its start; clears when it ends.

    The sell-out moment is the first evaluation that saw no unit left (within ~2 s).
    """
    from ..commerce.sales import list_sales

    limit_s = app[SETTINGS].alert_sold_out_s
    redis = app[REDIS]
    out: dict[str, tuple[bool, str, dict[str, Any]]] = {}
    for sale in await list_sales(app, show_id):
        if sale["left"] > 0 or sale["status"] == "scheduled":
            continue
        await redis.hsetnx(_k(show_id, "sold_out_at"), sale["id"], now_ms)
        at = int(await redis.hget(_k(show_id, "sold_out_at"), sale["id"]) or now_ms)
        took_s = round(max(at - sale["starts_at"], 0) / 1000, 1)
        if took_s < limit_s:
            out[f"sold_out_fast:{sale['id']}"] = (
                sale["status"] == "live",
                f"{sale['title']} sold out in {took_s:g} s (price too low?)",
                {"sale_id": sale["id"], "seconds": took_s, "price": sale["price"]},
            )
    return out


async def evaluate(
    app: web.Application, show_id: str, stats: dict[str, Any], now_ms: int | None = None
) -> list[dict[str, Any]]:
    """Check every rule against ``stats``; push and keep each alert that fired or cleared."""
    now = int(stats["at"]) if now_ms is None else now_ms
    try:
        return await _evaluate(app, show_id, stats, now)
    except Exception:  # alerts must never stop the show's timers
        log.exception("alert evaluation failed for %s", show_id)
        return []


async def _evaluate(
    app: web.Application, show_id: str, stats: dict[str, Any], now: int
) -> list[dict[str, Any]]:
    redis = app[REDIS]
    changed: list[dict[str, Any]] = []
    for kind, (firing, reason, numbers) in (await _conditions(app, show_id, stats, now)).items():
        state = "firing" if firing else "clear"
        if not await TRANSITION(app, [_k(show_id, "state")], [kind, state]):
            continue
        alert = {"at": now, "alert": kind, "state": state, "reason": reason, **numbers}
        async with redis.pipeline(transaction=False) as pipe:
            pipe.rpush(_k(show_id, "log"), json.dumps(alert))
            pipe.ltrim(_k(show_id, "log"), -KEEP, -1)
            pipe.expire(_k(show_id, "log"), app[SETTINGS].insight_ttl_s)
            await pipe.execute()
        await publish(app, show_id, {"type": "alert", **alert}, staff_only=True)
        changed.append(alert)
    return changed


async def history(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    """Every alert that fired or cleared, oldest first."""
    return [json.loads(raw) for raw in await app[REDIS].lrange(_k(show_id, "log"), 0, -1)]

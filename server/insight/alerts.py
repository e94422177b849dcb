"""Anomaly alerts for staff: viewers dropping fast, the stream stalling or its bitrate collapsing,
payment failures spiking, chat flood, a banned-word burst, bot buying (many buys from one address,
or from guest accounts created moments before), a sale selling out too fast.

The show's commerce leader evaluates them with every stats push (~2 s). Each alert kind has a
state in Redis; a change of state is one atomic compare-and-set, so an alert fires once per
episode and clears once, whichever node evaluates. Every change is pushed to staff as an
``alert`` event and kept (the last :data:`KEEP` of them) for the studio and the report.

What the rules read is written where it happens, into the show's Redis keys, so any node's
evaluation sees all of it: buys and rejected danmaku by the node that handled them (one-line
hooks that never raise), the publisher's packets and bytes by the process holding it
(:mod:`media.ingest_meter`, started here for this process's relay).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..appkeys import REDIS, SETTINGS
from ..auth import Claims
from ..realtime.banned_words import default_words, normalize
from ..redis import keys as base
from ..redis import lua
from ..redis.broker import publish

if TYPE_CHECKING:
    from media.ingest_meter import IngestReporter

log = logging.getLogger("liveshop.alerts")
KEEP = 200
Conditions = dict[str, tuple[bool, str, dict[str, Any]]]  # kind → (firing, reason, numbers)
INGEST_EVERY_S = 1.0  # how often the origin writes an ingest sample
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
    app: web.Application, claims: Claims, ip: str | None, body: dict[str, Any]
) -> None:
    """Count a reservation (HTTP or WebSocket buy) for the bot-buying alerts: by the buyer's
    address, and when the buyer is a guest account created moments before (its token's ``iat``:
    a guest id is born with its token)."""
    if body.get("outcome") != "reserved":
        return
    show_id = claims.show_id
    now = time.time()
    try:
        async with app[REDIS].pipeline(transaction=False) as pipe:
            if ip:
                name = _k(show_id, "ip_buys", str(int(now // 60)))
                pipe.hincrby(name, ip, 1)
                pipe.expire(name, 600)
            if claims.guest and now - claims.iat < app[SETTINGS].alert_new_account_age_s:
                _bump(pipe, _k(show_id, "new_buys"), claims.user_id, int(now * 1000))
            await pipe.execute()
    except Exception:
        log.exception("counting a buy for the alerts failed for %s", show_id)


ADVERTISING = "advertising_claim"  # the built-in list: absolute claims (advertising law)
OPERATOR = "operator_list"  # words the operator added with --banned-words


@functools.cache
def _built_in_words() -> frozenset[str]:
    return frozenset(normalize(word) for word in default_words())


def word_category(word: str) -> str:
    """The category of a banned word (as the filter returns it: normalized)."""
    return ADVERTISING if word in _built_in_words() else OPERATOR


async def banned_word(app: web.Application, show_id: str, word: str) -> None:
    """Count one danmaku the banned-word filter rejected, by the word's category.

    Only built-in advertising terms are kept by name (they name no one); an operator's own
    words are often abuse, and the alert goes on a studio screen: those count by category only.
    """
    category = word_category(word)
    try:
        async with app[REDIS].pipeline(transaction=False) as pipe:
            shown = word if category == ADVERTISING else ""
            _bump(pipe, _k(show_id, "banned"), f"{category}|{shown}", int(time.time() * 1000))
            await pipe.execute()
    except Exception:
        log.exception("counting a banned word failed for %s", show_id)


# -- sliding windows: one hash per rule, a field per second and what was counted ---------------


def _bump(pipe: Any, name: str, what: str, now_ms: int) -> None:
    pipe.hincrby(name, f"{now_ms // 1000}|{what}", 1)
    pipe.expire(name, 600)


async def _window(redis: Any, name: str, now_ms: int, window_s: float) -> Counter[str]:
    """What was counted in the last ``window_s`` seconds; older fields are dropped."""
    low, high = (now_ms - int(window_s * 1000)) // 1000, now_ms // 1000
    counts: Counter[str] = Counter()
    stale = []
    for name_field, n in (await redis.hgetall(name)).items():
        second, _, what = name_field.partition("|")
        if not second.isdigit() or int(second) <= low:
            stale.append(name_field)
        elif int(second) <= high:
            counts[what] += int(n)
    if stale:
        await redis.hdel(name, *stale)
    return counts


async def _conditions(
    app: web.Application, show_id: str, stats: dict[str, Any], now_ms: int
) -> Conditions:
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
    conditions.update(await _stream(app, show_id, now_ms))
    conditions.update(await _abuse(app, show_id, now_ms))
    return conditions


async def _abuse(app: web.Application, show_id: str, now_ms: int) -> Conditions:
    """A banned-word burst; buys by guest accounts created moments before."""
    settings = app[SETTINGS]
    redis = app[REDIS]
    window_s = settings.alert_banned_words_window_s
    banned = await _window(redis, _k(show_id, "banned"), now_ms, window_s)
    categories: Counter[str] = Counter()
    words: Counter[str] = Counter()
    for what, n in banned.items():
        category, _, word = what.partition("|")
        categories[category] += n
        if word:
            words[word] += n
    rejected = sum(categories.values())
    by_category = ", ".join(f"{c} {n}" for c, n in categories.most_common())
    buys_window_s = settings.alert_new_account_window_s
    new_buys = await _window(redis, _k(show_id, "new_buys"), now_ms, buys_window_s)
    buys, accounts = sum(new_buys.values()), len(new_buys)
    age_s = settings.alert_new_account_age_s
    return {
        "banned_words": (
            rejected >= settings.alert_banned_words,
            f"{rejected} messages with banned words in {window_s:g} s"
            + (f" ({by_category})" if by_category else ""),
            {
                "rejected": rejected,
                "categories": dict(categories),
                "words": dict(words.most_common(5)),  # built-in advertising terms only
                "threshold": settings.alert_banned_words,
                "window_s": window_s,
            },
        ),
        "new_account_buying": (
            buys >= settings.alert_new_account_buys,
            f"{buys} units reserved in {buys_window_s:g} s by {accounts} guest accounts"
            f" created less than {age_s:g} s before buying",
            {
                "buys": buys,
                "accounts": accounts,
                "max_age_s": age_s,
                "threshold": settings.alert_new_account_buys,
                "window_s": buys_window_s,
            },
        ),
    }


@dataclass(frozen=True)
class IngestSample:
    """One second (about) of what the publisher sent, as its origin measured it."""

    at: int  # ms, the origin's wall clock at the end of the interval
    span_ms: int
    packets: int
    bytes: int

    @property
    def rate(self) -> float:
        """Payload bytes per second."""
        return self.bytes * 1000 / self.span_ms


def ingest_key(show_id: str) -> str:
    """The list the show's origin appends its ingest samples to (media/ingest_meter.py)."""
    return _k(show_id, "ingest")


def current_publisher(lines: list[str]) -> list[IngestSample]:
    """The samples of the newest publisher epoch; none when it ended (or nothing was written).

    A line that does not parse is skipped: one bad line must not stop every alert of the show.
    """
    parsed = [line.split("|") for line in lines]
    if not parsed or parsed[-1][2:] == ["end"]:
        return []
    epoch = parsed[-1][0]
    samples = []
    for p in parsed:
        if p[0] == epoch and len(p) == 5 and all(x.isdigit() for x in p[1:]):
            samples.append(IngestSample(int(p[1]), max(1, int(p[2])), int(p[3]), int(p[4])))
    return samples


async def _stream(app: web.Application, show_id: str, now_ms: int) -> Conditions:
    """The stream stalling (no packets for N s) or its bitrate collapsing, while a publisher is on.

    A stall is timed from the end of the newest interval that had packets; the collapse compares
    each of the last N s with the median rate of the minute before them. A stall is the stronger
    alert: no collapse during one, nor from the silent seconds just before or after it.
    """
    settings = app[SETTINGS]
    async with app[REDIS].pipeline(transaction=False) as pipe:
        pipe.lrange(ingest_key(show_id), 0, -1)
        pipe.hget(_k(show_id, "state"), "bitrate_collapse")
        lines, collapse_state = await pipe.execute()
    samples = current_publisher(lines)
    last_packet, quiet_s = 0, 0.0
    if samples:
        flowing = [x.at for x in samples if x.packets]
        last_packet = max(flowing, default=samples[0].at - samples[0].span_ms)
        quiet_s = round(max(0, now_ms - last_packet) / 1000, 1)
    stalled = bool(samples) and quiet_s >= settings.alert_stall_s
    if not samples:
        stall_reason = "no publisher"
    elif stalled:
        stall_reason = f"no media packets from the publisher for {quiet_s:g} s"
    else:
        stall_reason = "media packets from the publisher are flowing"
    recent_from = now_ms - int(settings.alert_bitrate_s * 1000)
    base_from = recent_from - int(settings.alert_bitrate_window_s * 1000)
    last = [x for x in samples if recent_from < x.at <= now_ms]
    recent = [x.rate for x in last]
    baseline = [x.rate for x in samples if base_from < x.at <= recent_from]
    median = statistics.median(baseline) if baseline else 0.0
    enough = (
        len(baseline) >= settings.alert_bitrate_baseline_min_s
        and len(recent) >= max(1, int(settings.alert_bitrate_s) - 1)
        and median > 0
    )
    ratio = max(recent) / median if enough else 1.0
    # To fire, packets in every one of those seconds (the trickle right after a stall is none);
    # once firing, a silent second keeps it until the stall (the stronger alert) takes over.
    trickle = collapse_state == "firing" or all(x.packets for x in last)
    collapsed = enough and trickle and not stalled and ratio < settings.alert_bitrate_ratio
    kbps = round(sum(recent) / len(recent) * 8 / 1000, 1) if recent else 0.0
    return {
        "stream_stall": (
            stalled,
            stall_reason,
            {
                "quiet_s": quiet_s,
                "last_packet_at": last_packet,
                "threshold_s": settings.alert_stall_s,
            },
        ),
        "bitrate_collapse": (
            collapsed,
            f"ingest bitrate {kbps:g} kbit/s, {ratio:.0%} of the previous minute's median"
            f" ({median * 8 / 1000:.1f} kbit/s) for {settings.alert_bitrate_s:g} s"
            if collapsed
            else f"ingest bitrate {kbps:g} kbit/s (median {median * 8 / 1000:.1f} kbit/s)",
            {
                "kbps": kbps,
                "median_kbps": round(median * 8 / 1000, 1),
                "ratio": round(ratio, 3),
                "threshold": settings.alert_bitrate_ratio,
            },
        ),
    }


async def _sold_out_fast(app: web.Application, show_id: str, now_ms: int) -> Conditions:
    """One alert per sale that ran out of units within N s of its start; clears when it ends.

    The sell-out moment is the first evaluation that saw no unit left (within ~2 s).
    """
    from ..commerce.sales import list_sales

    limit_s = app[SETTINGS].alert_sold_out_s
    redis = app[REDIS]
    out: Conditions = {}
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
    conditions = await _conditions(app, show_id, stats, now)
    async with redis.pipeline(transaction=False) as pipe:  # one round trip, each check atomic
        for kind, (firing, _, _) in conditions.items():
            TRANSITION.queue(
                app, pipe, [_k(show_id, "state")], [kind, "firing" if firing else "clear"]
            )
        moved = await pipe.execute()
    for (kind, (firing, reason, numbers)), changed_here in zip(
        conditions.items(), moved, strict=True
    ):
        if not changed_here:
            continue
        state = "firing" if firing else "clear"
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


async def _report_ingest(app: web.Application, reporter: IngestReporter) -> None:
    """Each second: write this process's publishers' samples; keep their shows' timers (and
    with them these alerts) running, also for a show that has no commerce going on."""
    from ..commerce.activity import touch

    touched: dict[str, float] = {}  # show → when this process last kept it active
    while True:
        await asyncio.sleep(INGEST_EVERY_S)
        try:
            lines = reporter.sample()
            await reporter.write(lines)
            now = time.monotonic()
            for show_id, line in lines.items():
                if line.endswith("|end"):
                    touched.pop(show_id, None)
                elif now - touched.get(show_id, -1e9) >= 60:
                    touched[show_id] = now
                    await touch(app, show_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reporting ingest samples failed")


async def _ingest_ctx(app: web.Application) -> AsyncIterator[None]:
    """Report this process's publishers' ingest (if it runs a relay) for the stream alerts."""
    from media.ingest_meter import IngestReporter

    from ..media_api import RELAY

    task = None
    if RELAY in app:
        reporter = IngestReporter(app[RELAY], app[REDIS], ingest_key)
        task = asyncio.create_task(_report_ingest(app, reporter), name="ingest-reporter")
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def setup(app: web.Application) -> None:
    """After server.media_api (the relay must exist when this starts)."""
    app.cleanup_ctx.append(_ingest_ctx)

"""``flash-sale``: N buyers racing for Q units, released at once at the sale start.

Stages: every buyer gets a token (and with ``--transport ws`` joins the show's WebSocket);
then the host creates the sale with a short countdown; every worker sleeps until the sale's
``starts_at`` (from the server's own clock, via the sale's ``now``) and fires all its buyers at
once. ``--retry-fraction`` of buyers double-tap (send the same idempotency key twice at
once: both answers must be identical); ``--greedy-fraction`` try one unit more than the per-user
limit with distinct keys. Afterwards the server's order records are checked: sold ==
min(Q, eligible demand), oversold == 0, per-user violations == 0, duplicates == 0.

The invariant checks live in :mod:`loadtest.invariants` as pure functions.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import aiohttp

from ..client import ApiError, call, create_show
from ..invariants import (
    SaleParams,
    check,
    check_client_agrees,
    check_replays,
    check_sale,
    orders_from_json,
    sale_counts,
)
from ..metrics import record_us, summary_ms
from .base import GO, Scenario, WorkerEnv
from .common import AnySocket, count_error, join, left, mint_with_retry

if TYPE_CHECKING:
    from ..runner import Aggregate, Controller

NOT_STARTED_RETRIES = 40
ERROR_RETRIES = 3


async def create_sale(
    ctl: Controller, show_id: str, host_token: str, quantity: int, per_user_limit: int, starts_in_s: int, duration_s: int,
    product_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Host creates a product with exactly ``quantity`` in stock and a flash sale of all of it."""
    if product_id is None:
        product = await ctl.request(
            "POST", f"/api/shows/{show_id}/products", host_token,
            {"title": "Loadtest sneaker", "price": 1999, "currency": "USD", "stock": quantity},
        )  # fmt: skip
        product_id = product["product"]["id"]
    body = await ctl.request(
        "POST", f"/api/shows/{show_id}/sales", host_token,
        {"product_id": product_id, "quantity": quantity, "price": 999, "per_user_limit": per_user_limit,
         "starts_in_s": starts_in_s, "duration_s": duration_s},
    )  # fmt: skip
    return dict(body["sale"])


def start_monotonic(sale: dict[str, Any], received_at: float) -> float:
    """The sale's start on this machine's monotonic clock, from the server's ``now`` and ``starts_at``."""
    return received_at + (sale["starts_at"] - sale["now"]) / 1000


async def fetch_orders(
    ctl: Controller, show_id: str, host_token: str, sale_id: str
) -> list[dict[str, Any]]:
    """Every order record of the sale, following ``next_cursor`` page by page."""
    out: list[dict[str, Any]] = []
    cursor: str | None = ""
    while cursor is not None:
        query = f"limit=5000&sale_id={sale_id}" + (f"&cursor={cursor}" if cursor else "")
        body = await ctl.request("GET", f"/api/shows/{show_id}/orders?{query}", host_token)
        out += body.get("orders", [])
        cursor = body.get("next_cursor")
    return out


class Buyer:
    """One person in the stampede: a token, maybe a socket, and the units they want."""

    def __init__(
        self, index: int, token: str, user_id: str, wants: int, double_tap: bool, pays: bool
    ) -> None:
        self.index = index
        self.token = token
        self.user_id = user_id
        self.wants = wants
        self.double_tap = double_tap
        self.pays = pays
        self.sock: AnySocket | None = None
        self.reservations: set[str] = set()


class FlashSaleScenario(Scenario):
    name = "flash-sale"
    help = "buy stampede on a flash sale, then check the order records: nothing oversold, limits, no duplicates"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--buyers", type=int, default=1000, help="buyers racing at the sale start"
        )
        parser.add_argument("--quantity", type=int, default=100, help="units on sale")
        parser.add_argument(
            "--per-user-limit", type=int, default=1, help="units one buyer may reserve"
        )
        parser.add_argument(
            "--retry-fraction",
            type=float,
            default=0.2,
            help="buyers that double-tap (same key twice)",
        )
        parser.add_argument(
            "--greedy-fraction", type=float, default=0.1, help="buyers trying limit+1 units"
        )
        parser.add_argument(
            "--transport",
            choices=("http", "ws"),
            default="http",
            help="buy over HTTP or the WebSocket",
        )
        parser.add_argument(
            "--connections", type=int, default=256, help="HTTP requests in flight per worker"
        )
        parser.add_argument(
            "--pay-fraction",
            type=float,
            default=0.5,
            help="share of buyers with a reservation who then pay it (double-tappers pay twice)",
        )
        parser.add_argument(
            "--countdown", type=int, default=2, help="seconds between sale creation and start"
        )

    async def prepare(self, ctl: Controller) -> dict[str, Any]:
        show_id, host_token = await create_show(
            ctl.session, ctl.url, f"loadtest flash sale {self.args['buyers']}", ctl.api_key
        )
        return {"show_id": show_id, "host_token": host_token, "run": uuid.uuid4().hex[:8]}

    async def control(self, ctl: Controller, plan: dict[str, Any]) -> None:
        a = self.args
        buyers = a["buyers"]
        ready = await ctl.wait_counter("joined", buyers, limit_s=buyers / max(a["ramp"], 1) + 120)
        if not ready:
            ctl.notes.append("not every buyer was ready when the sale was created")
        ctl.phase = "countdown"
        sale = await create_sale(
            ctl, plan["show_id"], plan["host_token"], a["quantity"], a["per_user_limit"],
            a["countdown"], max(int(a["duration"]) + a["countdown"] + 30, 60),
        )  # fmt: skip
        plan["sale"] = sale
        ctl.set_flag(GO, start_monotonic(sale, time.monotonic()))
        ctl.phase = "stampede"

    async def run_worker(self, plan: dict[str, Any], env: WorkerEnv) -> None:
        a = self.args
        buyers: list[Buyer] = []
        limit = a["per_user_limit"]
        gate = asyncio.Semaphore(32)  # token minting is setup, not the load under test

        async def prepare_buyer(i: int) -> None:
            rng = env.client_rng(i)
            double_tap = rng.random() < a["retry_fraction"]
            wants = limit + 1 if rng.random() < a["greedy_fraction"] else 1
            pays = rng.random() < a["pay_fraction"]
            if a["transport"] == "ws":
                await env.sleep_until(env.t0 + i / max(a["ramp"], 0.001))
            async with gate:
                try:
                    if a["transport"] == "ws":
                        sock = await join(
                            env, plan["show_id"], plan["host_token"], "viewer", f"Buyer {i}"
                        )
                        if sock is not None:
                            buyer = Buyer(i, sock.token, "", wants, double_tap, pays)
                            buyer.sock = sock
                            buyers.append(buyer)
                    else:
                        env.stats.add("clients")
                        token, uid = await mint_with_retry(
                            env, plan["show_id"], plan["host_token"], "viewer", f"Buyer {i}"
                        )
                        buyers.append(Buyer(i, token, uid, wants, double_tap, pays))
                except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as exc:
                    count_error(env, "token", exc, connect=True, final=True)
            env.stats.add("joined")

        await asyncio.gather(*(prepare_buyer(i) for i in env.share(a["buyers"])))
        start = await env.wait_flag(GO)
        if env.stopping:
            return
        sales = await call(env.session, "GET", f"{env.url}/api/shows/{plan['show_id']}/sales")
        sale_id = max(sales["sales"], key=lambda s: s["created_at"])["id"]
        env.stats.extra.update({"replays": [], "first": {}, "reserved_ms": [], "demand": 0})
        env.stats.extra["demand"] = sum(min(b.wants, limit) for b in buyers)
        in_flight = asyncio.Semaphore(a["connections"]) if a["transport"] == "http" else None
        await env.sleep_until(start)
        env.stats.extra["fired_late_ms"] = round((time.monotonic() - start) * 1000, 3)
        await asyncio.gather(
            *(self._buy_all(env, plan, sale_id, b, start, in_flight) for b in buyers)
        )
        payers = [b for b in buyers if b.reservations and b.pays]
        pay_gate = asyncio.Semaphore(a["connections"])
        env.stats.extra["paid"] = []
        await asyncio.gather(
            *(self._pay(env, b, rid, pay_gate) for b in payers for rid in b.reservations)
        )
        for b in buyers:
            if b.sock:
                left(env)
                await b.sock.close()

    async def _buy_all(
        self,
        env: WorkerEnv,
        plan: dict[str, Any],
        sale_id: str,
        buyer: Buyer,
        start: float,
        gate: asyncio.Semaphore | None,
    ) -> None:
        """All of one buyer's intents (one per unit wanted), at once."""
        await asyncio.gather(
            *(
                self._intent(env, plan, sale_id, buyer, unit, start, gate)
                for unit in range(buyer.wants)
            )
        )
        extra = env.stats.extra
        extra["last_answer_ms"] = max(
            extra.get("last_answer_ms", 0.0), (time.monotonic() - start) * 1000
        )

    async def _intent(
        self, env: WorkerEnv, plan: dict[str, Any], sale_id: str, buyer: Buyer, unit: int, start: float,
        gate: asyncio.Semaphore | None,
    ) -> None:  # fmt: skip
        """Try to reserve one unit: a fresh key after not_started, the same key after an error."""
        stats = env.stats
        for attempt in range(NOT_STARTED_RETRIES):
            key = f"{plan['run']}-{buyer.index}-{unit}-{attempt}"
            taps = 2 if buyer.double_tap and unit == 0 and attempt == 0 else 1
            answers = await asyncio.gather(
                *(self._attempt(env, sale_id, buyer, key, gate) for _ in range(taps))
            )
            outcomes = [outcome for outcome, _ in answers]
            first = min(answers, key=lambda pair: pair[1])[0]
            stats.extra["first"][key] = first
            if taps > 1:
                stats.extra["replays"] += [(key, o) for o in outcomes]
            stats.add(f"outcome:{first}")
            if first == "reserved":
                stats.add("reserved")
                stats.extra["reserved_ms"].append(
                    round((min(t for _, t in answers) - start) * 1000, 2)
                )
            if first != "not_started":
                return
            await asyncio.sleep(0.02)

    async def _pay(self, env: WorkerEnv, buyer: Buyer, rid: str, gate: asyncio.Semaphore) -> None:
        """Pay one reservation (``POST /api/orders/{id}/pay``); double-tappers pay twice with the
        same key, which must charge once and answer both."""
        taps = 2 if buyer.double_tap else 1

        async def once() -> str:
            async with gate:
                started = time.monotonic()
                env.stats.add("pay_attempts")
                try:
                    body = await call(
                        env.session,
                        "POST",
                        f"{env.url}/api/orders/{rid}/pay",
                        buyer.token,
                        {"key": f"pay-{rid}"},
                    )
                except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as exc:
                    count_error(env, "pay", exc)
                    return "error"
                record_us(env.stats.hist("pay"), (time.monotonic() - started) * 1e6)
                order = body.get("order") or {}
                return str(body.get("status") or order.get("status"))

        statuses = await asyncio.gather(*(once() for _ in range(taps)))
        if "paid" in statuses:
            env.stats.extra["paid"].append(rid)
        if taps > 1 and len(set(statuses)) > 1:
            env.stats.add("pay_replay_mismatch")

    async def _attempt(
        self, env: WorkerEnv, sale_id: str, buyer: Buyer, key: str, gate: asyncio.Semaphore | None
    ) -> tuple[str, float]:
        """One buy call (retried with the same key on transport errors); returns (outcome, answered at)."""
        stats = env.stats
        outcome = "error"
        for _ in range(ERROR_RETRIES):
            stats.add("sent")
            started = time.monotonic()
            try:
                if buyer.sock is not None:
                    frame = await buyer.sock.request("buy", sale_id=sale_id, key=key)
                    if frame.get("type") == "reply":
                        outcome = str(frame.get("outcome"))
                        if frame.get("reservation_id"):
                            buyer.reservations.add(str(frame["reservation_id"]))
                    else:
                        raise ApiError(0, {"error": {"code": frame.get("code")}})
                else:
                    assert gate is not None
                    async with gate:
                        started = time.monotonic()
                        body = await call(
                            env.session,
                            "POST",
                            f"{env.url}/api/sales/{sale_id}/buy",
                            buyer.token,
                            {"key": key},
                        )
                    outcome = str(body.get("outcome"))
                    if body.get("reservation_id"):
                        buyer.reservations.add(str(body["reservation_id"]))
                stats.latency_us((time.monotonic() - started) * 1e6)
                stats.add("received")
                return outcome, time.monotonic()
            except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as exc:
                count_error(env, "buy", exc)
                outcome = "error"
                await asyncio.sleep(0.05)
        stats.add("unanswered")
        return outcome, time.monotonic()

    async def finish(self, ctl: Controller, plan: dict[str, Any], agg: Aggregate) -> dict[str, Any]:
        a = self.args
        sale = plan.get("sale")
        if not sale:
            return {"invariants": {"sale_created": check(False, "the sale was never created")}}
        sale_id = sale["id"]
        demand = sum(int(x.get("demand", 0)) for x in agg.extras)
        params = SaleParams(a["quantity"], a["per_user_limit"], demand)
        orders = orders_from_json(
            {"orders": await fetch_orders(ctl, plan["show_id"], plan["host_token"], sale_id)},
            sale_id,
        )
        server_sale = (await ctl.request("GET", f"/api/sales/{sale_id}"))["sale"]
        invariants = check_sale(orders, params)
        counts = sale_counts(orders, params)
        first: dict[str, str] = {}
        replays: list[tuple[str, str]] = []
        reserved_ms: list[float] = []
        for extra in agg.extras:
            first.update(extra.get("first", {}))
            replays += [tuple(r) for r in extra.get("replays", [])]  # type: ignore[misc]
            reserved_ms += extra.get("reserved_ms", [])
        invariants["idempotent_retries"] = check_replays(first, replays)
        invariants["clients_agree_with_orders"] = check_client_agrees(
            agg.counters.get("reserved", 0), counts["sold"], agg.counters.get("unanswered", 0)
        )
        client_paid = {rid for extra in agg.extras for rid in extra.get("paid", [])}
        paid_orders = {o.order_id for o in orders if o.status == "paid"}
        invariants["payments_recorded"] = check(
            client_paid == paid_orders and agg.counters.get("pay_replay_mismatch", 0) == 0,
            f"buyers were told paid for {len(client_paid)} reservations, the records hold {len(paid_orders)} paid; "
            f"{agg.counters.get('pay_replay_mismatch', 0)} double payments got different answers",
        )
        total = server_sale["left"] + server_sale["reserved"] + server_sale["sold"]
        invariants["sale_counters_consistent"] = check(
            total == a["quantity"]
            and server_sale["reserved"] + server_sale["sold"] == counts["sold"],
            f"left {server_sale['left']} + reserved {server_sale['reserved']} + sold {server_sale['sold']} = {total} "
            f"(quantity {a['quantity']}); orders hold {counts['sold']}",
        )
        reserved_ms.sort()
        span_s = max(
            max((x.get("last_answer_ms", 0.0) for x in agg.extras), default=0.0) / 1000, 0.001
        )
        answered = reserved_ms
        outcomes = Counter(
            {k.split(":", 1)[1]: v for k, v in agg.counters.items() if k.startswith("outcome:")}
        )
        return {
            "sale": {
                "sale_id": sale_id,
                "quantity": a["quantity"],
                "per_user_limit": a["per_user_limit"],
                "buyers": a["buyers"],
                "eligible_demand": demand,
                "sold": counts["sold"],
                "reserved": counts["reserved"],
                "paid": counts["paid"],
                "oversold": counts["oversold"],
                "per_user_violations": counts["per_user_violations"],
                "duplicates": counts["duplicates"],
                "orders": len(orders),
                "outcomes": dict(outcomes),
                "attempts": agg.counters.get("sent", 0),
                "attempts_per_s": round(agg.counters.get("sent", 0) / span_s, 1),
                "sellout_ms": answered[-1]
                if answered and counts["sold"] >= a["quantity"]
                else None,
                "first_reserved_ms": answered[0] if answered else None,
                "stampede_s": round(span_s, 3),
                "fired_late_ms": max((x.get("fired_late_ms", 0) for x in agg.extras), default=None),
                "buy_latency_ms": summary_ms(agg.hist("latency")),
                "pay_attempts": agg.counters.get("pay_attempts", 0),
                "pay_latency_ms": summary_ms(agg.hist("pay")),
                "reserved_over_time": _cumulative(reserved_ms),
                "server_view": {
                    k: server_sale[k] for k in ("quantity", "left", "reserved", "sold", "status")
                },
            },
            "invariants": invariants,
        }


def _cumulative(times_ms: list[float], points: int = 200) -> list[tuple[float, int]]:
    """(ms after start, units reserved so far), thinned to at most ``points`` points."""
    if not times_ms:
        return []
    step = max(1, len(times_ms) // points)
    out = [(t, i + 1) for i, t in enumerate(times_ms) if i % step == 0]
    if out[-1][1] != len(times_ms):
        out.append((times_ms[-1], len(times_ms)))
    return out

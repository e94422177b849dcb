"""``show``: a realistic mixed crowd and every check at once.

Viewers join at ``--ramp``; once everyone is in, the show runs for ``--duration`` seconds:
a share of viewers chat (plain viewer role, under the per-user rate limit) and tap likes,
the host opens a giveaway that viewers enter over the WebSocket, and at ``--sale-at`` seconds
the host starts a flash sale whose buyers stampede over the WebSocket at the sale start. At the
end the giveaway is drawn and verified, and the sale's order records are checked.

Checks: chat latency/loss/order (as ``chat``), every like counted, the flash-sale invariants (as
``flash-sale``), and the giveaway proof (as ``lottery``; other present viewers may be listed).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..client import call, create_show
from ..invariants import (
    SaleParams,
    check,
    check_client_agrees,
    check_replays,
    check_sale,
    orders_from_json,
    sale_counts,
)
from ..metrics import summary_ms
from .base import GO, SLOT_2, Scenario, WorkerEnv
from .common import DRAIN_S, AnySocket, ChatReceiver, chat_text, join, left, ramp_at
from .flash_sale import create_sale, fetch_orders, start_monotonic
from .lottery import create_lottery, draw_and_prove, judge_draw

if TYPE_CHECKING:
    from ..runner import Aggregate, Controller


class ShowScenario(Scenario):
    name = "show"
    help = "a live show: join ramp, chat, likes, a flash-sale buy burst and a giveaway, with all checks"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--viewers", type=int, default=500, help="viewers in the show")
        parser.add_argument("--chatters", type=float, default=0.2, help="share of viewers who chat")
        parser.add_argument(
            "--chat-every",
            type=float,
            default=4.0,
            help="mean seconds between a chatter's messages (>1: the per-user limit)",
        )
        parser.add_argument(
            "--likers", type=float, default=0.3, help="share of viewers who tap likes"
        )
        parser.add_argument(
            "--buyers", type=float, default=0.5, help="share of viewers in the flash-sale stampede"
        )
        parser.add_argument("--quantity", type=int, default=50, help="units in the flash sale")
        parser.add_argument("--per-user-limit", type=int, default=1)
        parser.add_argument(
            "--retry-fraction",
            type=float,
            default=0.2,
            help="buyers that double-tap (same key twice)",
        )
        parser.add_argument(
            "--entrants", type=float, default=0.6, help="share of viewers entering the giveaway"
        )
        parser.add_argument("--winners", type=int, default=3)
        parser.add_argument(
            "--sale-at",
            type=float,
            default=None,
            help="seconds into the show the sale starts (default: a third)",
        )

    async def prepare(self, ctl: Controller) -> dict[str, Any]:
        show_id, host_token = await create_show(
            ctl.session, ctl.url, f"loadtest show {self.args['viewers']}", ctl.api_key
        )
        return {
            "show_id": show_id,
            "host_token": host_token,
            "tag": "lt" + uuid.uuid4().hex[:8],
            "run": uuid.uuid4().hex[:8],
        }

    async def control(self, ctl: Controller, plan: dict[str, Any]) -> None:
        a = self.args
        await ctl.wait_counter(
            "joined", a["viewers"], limit_s=a["viewers"] / max(a["ramp"], 1) + 60
        )
        plan["lottery"] = await create_lottery(
            ctl, plan["show_id"], plan["host_token"], a["winners"], int(a["duration"]) + 600
        )
        ctl.phase = "live"
        go = time.monotonic() + 0.5
        ctl.set_flag(GO, go)
        sale_at = a["sale_at"] if a["sale_at"] is not None else a["duration"] / 3
        await asyncio.sleep(max(0.0, go + sale_at - 2 - time.monotonic()))
        sale = await create_sale(
            ctl, plan["show_id"], plan["host_token"], a["quantity"], a["per_user_limit"], 2, 600
        )
        plan["sale"] = sale
        ctl.set_flag(SLOT_2, start_monotonic(sale, time.monotonic()))
        ctl.phase = "live + sale"

    async def run_worker(self, plan: dict[str, Any], env: WorkerEnv) -> None:
        self._lookups: dict[str, asyncio.Future[Any]] = {}
        env.stats.extra.update(
            {"first": {}, "replays": [], "demand": 0, "entered": [], "likes_seen": 0}
        )
        await asyncio.gather(
            *(env.spawn(self._viewer(plan, env, i)) for i in env.share(self.args["viewers"]))
        )

    async def _viewer(self, plan: dict[str, Any], env: WorkerEnv, i: int) -> None:
        a, stats, rng = self.args, env.stats, env.client_rng(i)
        await env.sleep_until(ramp_at(env, i, a["ramp"]))
        receiver = ChatReceiver(stats, plan["tag"])
        sock = await join(env, plan["show_id"], plan["host_token"], "viewer", f"Fan {i}", receiver)
        stats.add("joined")
        if sock is None:
            return
        try:
            go = await env.wait_flag(GO)
            if env.stopping or sock.closed:
                return
            stats.add("receivers")
            end = go + float(a["duration"])
            jobs = []
            if rng.random() < a["chatters"]:
                jobs.append(self._chat(plan, env, sock, i, go, end, rng))
            if rng.random() < a["likers"]:
                jobs.append(self._like(env, sock, go, end, rng))
            if rng.random() < a["buyers"]:
                jobs.append(self._buy(plan, env, sock, i, rng))
            if rng.random() < a["entrants"]:
                jobs.append(self._enter(plan, env, sock, go, end, rng))
            await asyncio.gather(*jobs)
            await env.wait_until_or_stop(end + 0.5, sock.reader)
            await env.quiesce("received", idle_s=DRAIN_S)
            env.stats.extra["likes_seen"] = max(env.stats.extra["likes_seen"], receiver.likes_total)
            if sock.closed:
                stats.add("errors")
                stats.add(f"error:closed_{sock.close_code}")
                stats.add("closed_receivers")
                stats.add("received_by_closed", receiver.received)
        finally:
            left(env)
            await sock.close()

    async def _chat(
        self,
        plan: dict[str, Any],
        env: WorkerEnv,
        sock: AnySocket,
        i: int,
        go: float,
        end: float,
        rng: random.Random,
    ) -> None:
        """A viewer chatting now and then (exponential gaps, never faster than the rate limit allows)."""
        seq = 0
        due = go + rng.uniform(0, self.args["chat_every"])
        while due < end and not sock.closed and not env.stopping:
            await env.sleep_until(due)
            env.stats.add("sent")
            frame = await sock.request("chat", text=chat_text(plan["tag"], i, seq))
            if frame.get("type") == "reply":
                env.stats.add("accepted")
            else:
                env.stats.add("errors")
                env.stats.add(f"error:chat_{frame.get('code')}")
            seq += 1
            due += max(1.05, rng.expovariate(1 / self.args["chat_every"]))

    async def _like(
        self, env: WorkerEnv, sock: AnySocket, go: float, end: float, rng: random.Random
    ) -> None:
        """Taps grouped about once a second, as the protocol asks."""
        due = go + rng.uniform(0, 1)
        while due < end and not sock.closed and not env.stopping:
            await env.sleep_until(due)
            count = rng.randint(1, 10)
            await sock.send("like", count=count)
            env.stats.add("likes_sent", count)
            due += rng.uniform(0.8, 1.5)

    async def _buy(
        self, plan: dict[str, Any], env: WorkerEnv, sock: AnySocket, i: int, rng: random.Random
    ) -> None:
        start = await env.wait_flag(SLOT_2)
        if env.stopping or sock.closed:
            return
        sale_id = await self._sale_id(plan, env)
        limit = self.args["per_user_limit"]
        env.stats.extra["demand"] += min(1, limit)
        await env.sleep_until(start)
        key = f"{plan['run']}-{i}"
        taps = 2 if rng.random() < self.args["retry_fraction"] else 1
        for _attempt in range(40):
            started = time.monotonic()
            frames = await asyncio.gather(
                *(sock.request("buy", sale_id=sale_id, key=key) for _ in range(taps))
            )
            env.stats.add("buy_attempts", taps)
            outcomes = [
                str(f.get("outcome")) if f.get("type") == "reply" else "error" for f in frames
            ]
            env.stats.hist("buy_latency").record_value(
                max(1, int((time.monotonic() - started) * 1e6))
            )
            env.stats.extra["first"][key] = outcomes[0]
            if taps > 1:
                env.stats.extra["replays"] += [(key, o) for o in outcomes]
            if outcomes[0] == "not_started":
                key = f"{key}r"
                await asyncio.sleep(0.02)
                continue
            env.stats.add(f"outcome:{outcomes[0]}")
            if outcomes[0] == "reserved":
                env.stats.add("reserved")
            if outcomes[0] == "error":
                env.stats.add("unanswered")
                env.stats.add("errors")
                env.stats.add(f"error:buy_{frames[0].get('code')}")
            return

    async def _sale_id(self, plan: dict[str, Any], env: WorkerEnv) -> str:
        sales = await self._lookup(env, f"/api/shows/{plan['show_id']}/sales")
        return str(max(sales["sales"], key=lambda s: s["created_at"])["id"])

    async def _lookup(self, env: WorkerEnv, path: str) -> Any:
        """One GET per worker however many viewers ask (the stampede must not hit this first)."""
        future = self._lookups.get(path)
        if future is None:
            future = self._lookups[path] = asyncio.ensure_future(
                call(env.session, "GET", env.url + path)
            )
        return await asyncio.shield(future)

    async def _enter(
        self,
        plan: dict[str, Any],
        env: WorkerEnv,
        sock: AnySocket,
        go: float,
        end: float,
        rng: random.Random,
    ) -> None:
        await env.sleep_until(go + rng.uniform(0, max(0.1, (end - go) / 2)))
        if sock.closed or env.stopping:
            return
        body = await self._lookup(env, f"/api/shows/{plan['show_id']}/lotteries")
        frame = await sock.request("lottery.enter", lottery_id=body["lotteries"][-1]["id"])
        if frame.get("type") == "reply" and frame.get("entered"):
            env.stats.extra["entered"].append(sock.welcome["user"]["id"])
        else:
            env.stats.add("errors")
            env.stats.add(f"error:enter_{frame.get('code')}")

    async def finish(self, ctl: Controller, plan: dict[str, Any], agg: Aggregate) -> dict[str, Any]:
        a, c = self.args, agg.counters
        invariants: dict[str, Any] = {}
        out: dict[str, Any] = {}
        # chat
        accepted, receivers = c.get("accepted", 0), c.get("receivers", 0)
        expected = accepted * receivers
        lost = max(0, expected - c.get("received", 0))
        closed_missing = max(
            0, c.get("closed_receivers", 0) * accepted - c.get("received_by_closed", 0)
        )
        invariants["no_silent_loss"] = check(
            lost <= c.get("skipped", 0) + closed_missing,
            f"lost {lost} of {expected}; announced {c.get('skipped', 0)} skipped + {closed_missing} on closed connections",
        )
        invariants["chat_in_order"] = check(
            c.get("out_of_order", 0) == 0, f"{c.get('out_of_order', 0)} out-of-order chat events"
        )
        likes_seen = max((x.get("likes_seen", 0) for x in agg.extras), default=0)
        invariants["likes_counted"] = check(
            likes_seen == c.get("likes_sent", 0),
            f"server total {likes_seen}, taps sent {c.get('likes_sent', 0)}",
        )
        out["expected"] = expected
        out["chat"] = {
            "receivers": receivers,
            "accepted": accepted,
            "rejected": c.get("sent", 0) - accepted,
        }
        out["likes"] = {"sent": c.get("likes_sent", 0), "server_total": likes_seen}
        # sale
        sale = plan.get("sale")
        if sale:
            demand = sum(x.get("demand", 0) for x in agg.extras)
            params = SaleParams(a["quantity"], a["per_user_limit"], demand)
            orders = orders_from_json(
                {
                    "orders": await fetch_orders(
                        ctl, plan["show_id"], plan["host_token"], sale["id"]
                    )
                },
                sale["id"],
            )
            invariants.update(check_sale(orders, params))
            counts = sale_counts(orders, params)
            first = {k: v for x in agg.extras for k, v in x.get("first", {}).items()}
            replays = [tuple(r) for x in agg.extras for r in x.get("replays", [])]
            invariants["idempotent_retries"] = check_replays(first, replays)  # type: ignore[arg-type]
            invariants["clients_agree_with_orders"] = check_client_agrees(
                c.get("reserved", 0), counts["sold"], c.get("unanswered", 0)
            )
            outcomes = Counter(
                {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("outcome:")}
            )
            out["sale"] = {
                "sale_id": sale["id"], "quantity": a["quantity"], "per_user_limit": a["per_user_limit"],
                "eligible_demand": demand, **counts, "outcomes": dict(outcomes),
                "attempts": c.get("buy_attempts", 0), "buy_latency_ms": summary_ms(agg.hist("buy_latency")),
            }  # fmt: skip
        else:
            invariants["sale_created"] = check(False, "the show ended before the sale was created")
        # giveaway
        lottery = plan.get("lottery")
        if lottery:
            entered = {uid for x in agg.extras for uid in x.get("entered", [])}
            proof, draw_ms = await draw_and_prove(ctl, lottery["id"], plan["host_token"])
            invariants.update(
                judge_draw(proof, lottery["commitment"], entered, a["winners"], others_allowed=True)
            )
            out["lottery"] = {
                "lottery_id": lottery["id"], "entrants": len(proof.get("entrants", [])), "confirmed_entries": len(entered),
                "winners": len(proof.get("winners", [])), "draw_ms": round(draw_ms, 2),
            }  # fmt: skip
        out["invariants"] = invariants
        return out

"""``chat``: N viewers connected, M chatters sending at a total rate; latency on every receiver.

Chatters use moderator tokens minted by the host (``--chatter-role moderator``, the default):
staff are exempt from the per-user chat rate limit, so ``--rate`` is exactly what is offered.
With ``--chatter-role viewer`` the chatters are plain viewers and the rate must be spread over
at least ``rate / 1 msg/s`` chatters (the server's default per-user limit); their chat is also
the kind the server may drop for slow consumers (announced with ``skipped``).

Every message carries its send time from the machine-wide monotonic clock in its text, so each
receiving viewer measures exact send→receive latency. The chat phase starts once the whole
crowd has joined (the join ramp is measured separately as connect time), so every message is
expected by every connection: ``expected = accepted × receivers``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..client import create_show
from ..metrics import record_us, summary_ms
from .base import GO, Scenario, WorkerEnv
from .common import DRAIN_S, AnySocket, ChatReceiver, chat_text, join, left, ramp_at

if TYPE_CHECKING:
    from ..runner import Aggregate, Controller


class ChatScenario(Scenario):
    name = "chat"
    help = "danmaku flood: --viewers connected, --chatters sending at a total --rate msg/s"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--viewers", type=int, default=1000, help="connected viewers (chatters included)"
        )
        parser.add_argument(
            "--chatters", type=int, default=10, help="how many of the viewers send chat"
        )
        parser.add_argument(
            "--rate", type=float, default=100.0, help="total chat messages per second"
        )
        parser.add_argument(
            "--chatter-role",
            choices=("moderator", "viewer"),
            default="moderator",
            help="moderators are exempt from the per-user rate limit (default); viewers are not",
        )

    async def prepare(self, ctl: Controller) -> dict[str, Any]:
        a = self.args
        show_id, host_token = await create_show(
            ctl.session, ctl.url, f"loadtest chat {a['viewers']}", ctl.api_key
        )
        chatters = max(1, min(a["chatters"], a["viewers"]))
        if a["chatter_role"] == "viewer" and a["rate"] / chatters > 1.0:
            ctl.notes.append(
                f"{a['rate'] / chatters:.1f} msg/s per viewer chatter exceeds the default per-user limit "
                "(1/s): expect rate_limited errors; use more --chatters or --chatter-role moderator"
            )
        if a["chatter_role"] == "moderator" and a["rate"] / chatters > 15:
            ctl.notes.append(
                f"{a['rate'] / chatters:.0f} msg/s per chatter is close to the gateway's flood guard "
                "(20 frames/s per connection): use more --chatters"
            )
        return {
            "show_id": show_id,
            "host_token": host_token,
            "tag": "lt" + uuid.uuid4().hex[:8],
            "viewers": a["viewers"],
            "chatters": chatters,
        }

    async def control(self, ctl: Controller, plan: dict[str, Any]) -> None:
        """Start the chat phase once everyone has joined (or failed to)."""
        a = self.args
        ready = await ctl.wait_counter(
            "joined", plan["viewers"], limit_s=plan["viewers"] / a["ramp"] + 60
        )
        if not ready:
            ctl.notes.append("not every viewer had joined when the chat phase started")
        ctl.phase = "chat"
        ctl.set_flag(GO, time.monotonic() + 0.5)

    async def run_worker(self, plan: dict[str, Any], env: WorkerEnv) -> None:
        await asyncio.gather(
            *(env.spawn(self._viewer(plan, env, i)) for i in env.share(plan["viewers"]))
        )

    async def _viewer(self, plan: dict[str, Any], env: WorkerEnv, i: int) -> None:
        stats, tag, duration = env.stats, plan["tag"], float(self.args["duration"])
        await env.sleep_until(ramp_at(env, i, self.args["ramp"]))
        if env.stopping:
            stats.add("joined")
            return
        on_events = ChatReceiver(stats, tag)
        is_chatter = i < plan["chatters"]
        role = self.args["chatter_role"] if is_chatter else "viewer"
        sock = await join(
            env,
            plan["show_id"],
            plan["host_token"],
            role,
            f"{'Chatter' if is_chatter else 'Viewer'} {i}",
            on_events,
        )
        stats.add("joined")
        if sock is None:
            return
        try:
            go = await env.wait_flag(GO)
            if env.stopping or sock.closed:
                return
            stats.add("receivers")
            sender = env.spawn(self._send(plan, env, sock, i, go, duration)) if is_chatter else None
            await env.wait_until_or_stop(go + duration + 0.5, sock.reader)
            if sender:
                await sender
            await env.quiesce("received", idle_s=DRAIN_S)
            if sock.closed:
                stats.add(f"closed_{sock.close_code}")
                stats.add("errors")
                stats.add(f"error:closed_{sock.close_code}")
                stats.add("received_by_closed", on_events.received)
                stats.add("closed_receivers")
        finally:
            left(env)
            await sock.close()

    async def _send(
        self,
        plan: dict[str, Any],
        env: WorkerEnv,
        sock: AnySocket,
        i: int,
        go: float,
        duration: float,
    ) -> None:
        """Open-loop sender: message k of chatter i is due at a fixed time, whatever happened before."""
        rate = float(self.args["rate"])
        per_chatter = rate / plan["chatters"]
        offset = i / rate
        stats = env.stats
        pending: list[asyncio.Future[dict[str, Any]]] = []

        def on_reply(fut: asyncio.Future[dict[str, Any]]) -> None:
            frame = fut.result()
            if frame.get("type") == "reply":
                stats.add("accepted")
            else:
                stats.add("errors")
                stats.add(f"error:{frame.get('code')}")

        k = 0
        while True:
            due = go + offset + k / per_chatter
            if due >= go + duration or sock.closed or env.stopping:
                break
            await env.sleep_until(due)
            late_us = (time.monotonic() - due) * 1e6
            record_us(stats.hist("send_lateness"), late_us)
            fut = sock.request_nowait("chat", text=chat_text(plan["tag"], i, k))
            fut.add_done_callback(on_reply)
            pending.append(fut)
            stats.add("sent")
            k += 1
        if pending:
            await asyncio.wait(pending, timeout=DRAIN_S)

    async def finish(self, ctl: Controller, plan: dict[str, Any], agg: Aggregate) -> dict[str, Any]:
        c = agg.counters
        accepted, receivers = c.get("accepted", 0), c.get("receivers", 0)
        expected = accepted * receivers
        received = c.get("received", 0)
        lost = max(0, expected - received)
        # Messages that receivers closed by the server (slow consumer, 1013) never got: announced by the close.
        closed_missing = max(
            0, c.get("closed_receivers", 0) * accepted - c.get("received_by_closed", 0)
        )
        announced = c.get("skipped", 0) + closed_missing
        return {
            "expected": expected,
            "chat": {
                "viewers": plan["viewers"],
                "chatters": plan["chatters"],
                "chatter_role": self.args["chatter_role"],
                "receivers": receivers,
                "offered_rate": self.args["rate"],
                "accepted": accepted,
                "rejected": c.get("sent", 0) - accepted,
                "closed_by_server": c.get("closed_receivers", 0),
                "connect_ms": summary_ms(agg.hist("connect")),
                "send_lateness_ms": summary_ms(agg.hist("send_lateness")),
            },
            "invariants": {
                "no_silent_loss": {
                    "ok": lost <= announced,
                    "detail": f"lost {lost} of {expected} deliveries; announced by the server: "
                    f"{c.get('skipped', 0)} skipped + {closed_missing} on closed connections",
                },
                "chat_in_order": {
                    "ok": c.get("out_of_order", 0) == 0,
                    "detail": f"{c.get('out_of_order', 0)} chat events arrived with a non-increasing id",
                },
            },
        }

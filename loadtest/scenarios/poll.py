"""``poll``: N voters vote once each (a share try to change their vote), then the host closes it.

Invariants from the API afterwards: the frozen tallies equal the votes the crowd was told were
counted (per option), the total equals the voters told ``voted``, a second vote of a
non-changeable poll answered ``already_voted`` with the first option, and the results are final.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING, Any

from ..client import call, create_show
from ..invariants import check
from ..metrics import summary_ms
from .base import GO, Scenario, WorkerEnv
from .crowd import decide, decisions_per_s, mint_crowd, outcomes

if TYPE_CHECKING:
    from ..runner import Aggregate, Controller


class PollScenario(Scenario):
    name = "poll"
    help = "poll: --voters vote once (some twice), the host closes; frozen tallies match what voters were told"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--voters", type=int, default=1000, help="people voting")
        parser.add_argument("--options", type=int, default=4, help="options (2-6)")
        parser.add_argument(
            "--revote-fraction", type=float, default=0.1, help="voters who vote a second time"
        )
        parser.add_argument(
            "--connections", type=int, default=128, help="HTTP requests in flight per worker"
        )

    async def prepare(self, ctl: Controller) -> dict[str, Any]:
        show_id, host_token = await create_show(
            ctl.session, ctl.url, f"loadtest poll {self.args['voters']}", ctl.api_key
        )
        return {"show_id": show_id, "host_token": host_token}

    async def control(self, ctl: Controller, plan: dict[str, Any]) -> None:
        a = self.args
        await ctl.wait_counter("joined", a["voters"], limit_s=a["voters"] / max(a["ramp"], 1) + 180)
        body = {
            "question": "Which next?",
            "options": [f"Option {i}" for i in range(a["options"])],
            "duration_s": 3600,
        }
        plan["poll"] = (
            await ctl.request(
                "POST", f"/api/shows/{plan['show_id']}/polls", plan["host_token"], body
            )
        )["poll"]
        ctl.phase = "voting"
        ctl.set_flag(GO, time.monotonic())
        await ctl.wait_counter("done", a["voters"], limit_s=a["voters"] / 20 + 120)

    async def run_worker(self, plan: dict[str, Any], env: WorkerEnv) -> None:
        a = self.args
        crowd = await mint_crowd(env, plan, a["voters"], "Voter")
        await env.wait_flag(GO)
        if env.stopping:
            return
        polls = await call(env.session, "GET", f"{env.url}/api/shows/{plan['show_id']}/polls")
        poll_id = polls["polls"][-1]["id"]
        gate = asyncio.Semaphore(a["connections"])
        counted: dict[int, int] = {}
        bad_replays = 0

        async def voter(i: int, token: str) -> None:
            nonlocal bad_replays
            option = i % a["options"]
            path = f"/api/polls/{poll_id}/vote"
            answer = await decide(env, gate, path, token, {"option": option})
            if answer and answer["outcome"] == "voted":
                counted[option] = counted.get(option, 0) + 1
                if env.client_rng(i).random() < a["revote_fraction"]:
                    again = await decide(
                        env, gate, path, token, {"option": (option + 1) % a["options"]}
                    )
                    if again and (again["outcome"] != "already_voted" or again["option"] != option):
                        bad_replays += 1
            env.stats.add("done")

        await asyncio.gather(*(voter(i, token) for i, token, _ in crowd))
        env.stats.add("done", len(env.share(a["voters"])) - len(crowd))
        env.stats.extra["counted"] = counted
        env.stats.extra["bad_replays"] = bad_replays

    async def finish(self, ctl: Controller, plan: dict[str, Any], agg: Aggregate) -> dict[str, Any]:
        poll = plan.get("poll")
        if not poll:
            return {"invariants": {"poll_created": check(False, "the poll was never created")}}
        closed = (await ctl.request("POST", f"/api/polls/{poll['id']}/close", plan["host_token"]))[
            "poll"
        ]
        told = [0] * self.args["options"]
        for extra in agg.extras:
            for option, n in extra.get("counted", {}).items():
                told[int(option)] += n
        bad = sum(int(x.get("bad_replays", 0)) for x in agg.extras)
        return {
            "poll": {
                "poll_id": poll["id"],
                "voters": self.args["voters"],
                "tallies": closed["tallies"],
                "told": told,
                "outcomes": outcomes(agg.counters),
                "decisions_per_s": decisions_per_s(agg),
                "decision_latency_ms": summary_ms(agg.hist("latency")),
            },
            "invariants": {
                "tallies_match_votes": check(
                    closed["tallies"] == told, f"tallies {closed['tallies']}, voters told {told}"
                ),
                "total_is_voters": check(
                    closed["total"] == sum(told), f"total {closed['total']}, counted {sum(told)}"
                ),
                "one_vote_per_user": check(
                    bad == 0,
                    f"{bad} second votes were not answered already_voted with the first option",
                ),
                "results_frozen": check(
                    bool(closed["final"]) and closed["status"] == "closed",
                    f"status {closed['status']}",
                ),
            },
        }

"""``lottery``: N entrants join a giveaway, the host draws, and the proof is verified independently.

The commitment is read when the giveaway opens; after the draw the proof
(``GET /api/lotteries/{id}/proof``) is checked with :mod:`loadtest.lottery_proof` (our own
implementation of the documented algorithm), and against what the crowd knows: everyone who
was told "entered" is in the frozen entrant list, nobody else is, and the winners are entrants.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from ..client import ApiError, call, create_show
from ..invariants import check
from ..lottery_proof import verify_proof
from ..metrics import summary_ms
from .base import GO, Scenario, WorkerEnv
from .common import count_error, mint_with_retry

if TYPE_CHECKING:
    from ..runner import Aggregate, Controller


async def create_lottery(
    ctl: Controller, show_id: str, host_token: str, winners: int, window_s: int
) -> dict[str, Any]:
    """Host opens a ``present`` giveaway (explicit entry); returns its public record."""
    body = await ctl.request(
        "POST", f"/api/shows/{show_id}/lotteries", host_token,
        {"prize": "Loadtest gift box", "winners": winners, "duration_s": window_s, "eligibility": "present"},
    )  # fmt: skip
    return dict(body["lottery"])


async def draw_and_prove(
    ctl: Controller, lottery_id: str, host_token: str
) -> tuple[dict[str, Any], float]:
    """Draw now (host) and fetch the proof; returns (proof, draw latency ms)."""
    started = time.monotonic()
    await ctl.request("POST", f"/api/lotteries/{lottery_id}/draw", host_token)
    draw_ms = (time.monotonic() - started) * 1000
    return dict(await ctl.request("GET", f"/api/lotteries/{lottery_id}/proof")), draw_ms


def judge_draw(
    proof: dict[str, Any],
    commitment: str,
    entered: set[str],
    winners_wanted: int,
    others_allowed: bool = False,
) -> dict[str, dict[str, Any]]:
    """Invariants of one draw: the proof verifies and matches what the crowd saw."""
    problems = verify_proof(proof, commitment)
    listed = set(proof.get("entrants", []))
    winners = list(proof.get("winners", []))
    missing = entered - listed
    strangers = listed - entered
    return {
        "lottery_proof_verifies": check(
            not problems, "; ".join(problems) or "seed, entrants hash and winners recomputed"
        ),
        "lottery_everyone_entered_is_listed": check(
            not missing,
            f"{len(missing)} of {len(entered)} confirmed entrants missing from the frozen list",
        ),
        "lottery_no_unknown_entrants": check(
            others_allowed or not strangers, f"{len(strangers)} listed entrants never entered"
        ),
        "lottery_winners_valid": check(
            len(winners) == min(winners_wanted, len(listed))
            and len(set(winners)) == len(winners)
            and set(winners) <= listed,
            f"{len(winners)} distinct winners drawn from {len(listed)} entrants (wanted {winners_wanted})",
        ),
    }


class LotteryScenario(Scenario):
    name = "lottery"
    help = "giveaway: --entrants enter, the host draws, the proof is verified with our own implementation"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--entrants", type=int, default=1000, help="people entering the giveaway"
        )
        parser.add_argument("--winners", type=int, default=3, help="winners to draw")
        parser.add_argument(
            "--connections", type=int, default=128, help="HTTP requests in flight per worker"
        )

    async def prepare(self, ctl: Controller) -> dict[str, Any]:
        show_id, host_token = await create_show(
            ctl.session, ctl.url, f"loadtest lottery {self.args['entrants']}", ctl.api_key
        )
        return {"show_id": show_id, "host_token": host_token}

    async def control(self, ctl: Controller, plan: dict[str, Any]) -> None:
        a = self.args
        await ctl.wait_counter(
            "joined", a["entrants"], limit_s=a["entrants"] / max(a["ramp"], 1) + 120
        )
        window = int(max(a["duration"], 1) + 600)
        plan["lottery"] = await create_lottery(
            ctl, plan["show_id"], plan["host_token"], a["winners"], window
        )
        ctl.phase = "entering"
        ctl.set_flag(GO, time.monotonic())
        await ctl.wait_counter("entry_done", a["entrants"], limit_s=a["entrants"] / 50 + 120)
        ctl.phase = "draw"

    async def run_worker(self, plan: dict[str, Any], env: WorkerEnv) -> None:
        a = self.args
        gate = asyncio.Semaphore(a["connections"])
        mint_gate = asyncio.Semaphore(32)  # token minting is setup, not the load under test
        tokens: list[tuple[str, str]] = []

        async def get_token(i: int) -> None:
            await env.sleep_until(env.t0 + i / max(a["ramp"], 0.001))
            env.stats.add("clients")
            async with mint_gate:
                try:
                    tokens.append(
                        await mint_with_retry(
                            env, plan["show_id"], plan["host_token"], "viewer", f"Fan {i}"
                        )
                    )
                except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                    count_error(env, "token", exc, connect=True, final=True)
            env.stats.add("joined")

        await asyncio.gather(*(get_token(i) for i in env.share(a["entrants"])))
        await env.wait_flag(GO)
        if env.stopping:
            return
        lotteries = await call(
            env.session, "GET", f"{env.url}/api/shows/{plan['show_id']}/lotteries"
        )
        lottery_id = lotteries["lotteries"][-1]["id"]
        entered: list[str] = []

        async def enter(token: str, user_id: str) -> None:
            async with gate:
                started = time.monotonic()
                env.stats.add("sent")
                try:
                    body = await call(
                        env.session,
                        "POST",
                        f"{env.url}/api/lotteries/{lottery_id}/enter",
                        token,
                        {},
                    )
                    env.stats.latency_us((time.monotonic() - started) * 1e6)
                    env.stats.add("received")
                    if body.get("entered"):
                        entered.append(user_id)
                except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                    count_error(env, "enter", exc)
            env.stats.add("entry_done")

        await asyncio.gather(*(enter(token, uid) for token, uid in tokens))
        env.stats.add("entry_done", len(env.share(a["entrants"])) - len(tokens))
        env.stats.extra["entered"] = entered

    async def finish(self, ctl: Controller, plan: dict[str, Any], agg: Aggregate) -> dict[str, Any]:
        lottery = plan.get("lottery")
        if not lottery:
            return {
                "invariants": {"lottery_created": check(False, "the giveaway was never created")}
            }
        entered = {uid for extra in agg.extras for uid in extra.get("entered", [])}
        proof, draw_ms = await draw_and_prove(ctl, lottery["id"], plan["host_token"])
        verify_started = time.monotonic()
        invariants = judge_draw(proof, lottery["commitment"], entered, self.args["winners"])
        verify_ms = (time.monotonic() - verify_started) * 1000
        return {
            "lottery": {
                "lottery_id": lottery["id"],
                "entrants": len(proof.get("entrants", [])),
                "confirmed_entries": len(entered),
                "winners": len(proof.get("winners", [])),
                "winner_ids": proof.get("winners", []),
                "commitment": lottery["commitment"],
                "draw_ms": round(draw_ms, 2),
                "verify_ms": round(verify_ms, 2),
                "enter_latency_ms": summary_ms(agg.hist("latency")),
            },
            "invariants": invariants,
        }

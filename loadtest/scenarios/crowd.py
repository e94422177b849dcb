"""What the ``auction``, ``group-buy`` and ``poll`` scenarios share: a crowd of HTTP clients.

Each worker mints its share of viewer tokens (setup, not load: at most 32 at once), waits for
the parent's GO, and fires one decision call per person through a gate of ``--connections``
requests in flight. A decision's round trip goes into the latency histogram; its outcome into
``outcome:NAME`` counters, and the answer into ``extra`` for the invariants.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp

from ..client import ApiError, call
from .base import WorkerEnv
from .common import count_error, mint_with_retry


async def mint_crowd(
    env: WorkerEnv, plan: dict[str, Any], total: int, label: str
) -> list[tuple[int, str, str]]:
    """(index, token, user id) for this worker's share of ``total`` people."""
    ramp = float(env.args.get("ramp") or 0)
    gate = asyncio.Semaphore(32)
    crowd: list[tuple[int, str, str]] = []

    async def one(i: int) -> None:
        if ramp:
            await env.sleep_until(env.t0 + i / ramp)
        env.stats.add("clients")
        async with gate:
            try:
                token, uid = await mint_with_retry(
                    env, plan["show_id"], plan["host_token"], "viewer", f"{label} {i}"
                )
                crowd.append((i, token, uid))
            except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as exc:
                count_error(env, "token", exc, connect=True, final=True)
        env.stats.add("joined")

    await asyncio.gather(*(one(i) for i in env.share(total)))
    return crowd


async def decide(
    env: WorkerEnv, gate: asyncio.Semaphore, path: str, token: str, body: dict[str, Any]
) -> dict[str, Any] | None:
    """One decision call (bid, join, vote): its answer, or None after an error (counted)."""
    async with gate:
        env.stats.add("sent")
        started = time.monotonic()
        try:
            answer = await call(env.session, "POST", f"{env.url}{path}", token, body)
        except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as exc:
            count_error(env, "decision", exc)
            return None
        env.stats.latency_us((time.monotonic() - started) * 1e6)
        env.stats.add("received")
        env.stats.add(f"outcome:{answer.get('outcome')}")
        ends = env.stats.extra.setdefault("span", [started, started])
        ends[0], ends[1] = min(ends[0], started), max(ends[1], time.monotonic())
        return dict(answer)


def outcomes(counters: Counter[str] | dict[str, int]) -> dict[str, int]:
    return {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("outcome:")}


def decisions_per_s(agg: Any) -> float:
    """Decisions answered per second over the span from the first call to the last answer."""
    spans = [x["span"] for x in agg.extras if x.get("span")]
    if not spans:
        return 0.0
    span = max(max(s[1] for s in spans) - min(s[0] for s in spans), 0.001)
    return round(agg.counters.get("received", 0) / span, 1)


async def wait_state(ctl: Any, path: str, key: str, done: Any, limit_s: float) -> dict[str, Any]:
    """GET ``path`` until ``done(state[key])`` or the limit; returns the last state."""
    deadline = time.monotonic() + limit_s
    while True:
        state = dict((await ctl.request("GET", path))[key])
        if done(state) or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.2)

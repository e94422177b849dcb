"""Hypothesis interleavings of votes, clock steps and closes keep a poll's invariants (real Redis).

After every group of concurrent operations: the tallies are exactly the count of the recorded
votes (one per user), the total is the number of voters, no vote is accepted at or after the
end, and once closed the results never change again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.appkeys import REDIS
from server.commerce import keys as ck
from server.commerce.polls import close_poll, create_poll, get_poll, vote

from .interactive_app import bare_app, host, new_show, users

USERS, OPTIONS, DURATION_MS = 5, 3, 10_000

op = st.one_of(
    st.tuples(st.just("vote"), st.integers(0, USERS - 1), st.integers(0, OPTIONS - 1)),
    st.tuples(st.just("clock"), st.integers(0, 6000)),
    st.tuples(st.just("close"), st.booleans()),
)
plans = st.lists(st.lists(op, min_size=1, max_size=6), min_size=1, max_size=8)


async def scenario(redis_url: str, plan: list[list[tuple[Any, ...]]], changeable: bool) -> None:
    async with bare_app(redis_url) as app:
        show_id = new_show()
        start = 1_000_000
        clock = [start]
        voters = users(show_id, USERS)
        poll = await create_poll(
            app, host(show_id), show_id,
            {"question": "Q", "options": ["a", "b", "c"], "duration_s": DURATION_MS // 1000,
             "changeable": changeable},
            now=start,
        )  # fmt: skip
        frozen: list[int] | None = None

        async def run(step: tuple[Any, ...]) -> None:
            nonlocal frozen
            now = clock[0]
            if step[0] == "vote":
                was_closed = frozen is not None  # before the call: a close may run meanwhile
                reply = await vote(app, voters[step[1]], poll["id"], step[2], now=now)
                if now >= start + DURATION_MS or was_closed:
                    assert reply["outcome"] == "closed"
                else:
                    assert reply["outcome"] in ("voted", "changed", "already_voted", "closed")
                    if not changeable:
                        assert reply["outcome"] != "changed"
            elif step[0] == "clock":
                clock[0] += step[1]
            else:
                closed, state = await close_poll(app, poll["id"], now=now, force=step[1])
                if closed:
                    frozen = state["tallies"]

        for group in plan:
            await asyncio.gather(*(run(step) for step in group))
            state = await get_poll(app, poll["id"], now=clock[0])
            recorded = await app[REDIS].hgetall(ck.poll_votes(show_id))
            counted = Counter(int(v) for v in recorded.values())
            assert state["tallies"] == [counted.get(i, 0) for i in range(OPTIONS)]
            assert state["total"] == len(recorded) == sum(state["tallies"])
            if frozen is not None:
                assert state["final"] and state["tallies"] == frozen


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=plans, changeable=st.booleans())
def test_votes_and_closes_keep_poll_invariants(
    redis_url: str, plan: list[list[tuple[Any, ...]]], changeable: bool
) -> None:
    asyncio.run(scenario(redis_url, plan, changeable))

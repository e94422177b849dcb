"""Hypothesis interleavings of bids, proxy bids, the clock and closes keep an auction's invariants.

Concurrent groups of operations run against the real ``auction.lua``. After every group: the
price never went down, the leader holds the highest accepted bid (ties: the earlier one) and the
price covers every accepted bid, no bid was accepted at or after the end in force when it was
decided, the end never passes the cap, a repeated key answers its first reply, and at most one
close ends the auction, giving the leader (and nobody else) one reservation at the final price.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.appkeys import REDIS
from server.commerce import keys as ck
from server.commerce.auctions import bid, bid_log, close_auction, create_auction, get_auction

from .interactive_app import bare_app, host, new_show, orders, product, users

USERS, START, INC = 4, 1000, 100
DURATION_S, SOFT_S, CAP_S = 20, 5, 8

op = st.one_of(
    st.tuples(
        st.just("bid"),
        st.integers(0, USERS - 1),
        st.integers(0, 12),  # amount = START + n × 50
        st.integers(0, 10),  # proxy: max = amount + n × 100 (0 = none)
        st.integers(0, 3),  # key
    ),
    st.tuples(st.just("clock"), st.integers(0, 9000)),
    st.tuples(st.just("close"), st.booleans()),
)
plans = st.lists(st.lists(op, min_size=1, max_size=6), min_size=1, max_size=8)


async def scenario(redis_url: str, plan: list[list[tuple[Any, ...]]]) -> None:
    async with bare_app(redis_url) as app:
        show_id = new_show()
        start = 5_000_000
        clock = [start]
        bidders = users(show_id, USERS)
        product_id = await product(app, show_id, 1)
        auction = await create_auction(
            app, host(show_id), show_id,
            {"product_id": product_id, "start_price": START, "increment": INC,
             "duration_s": DURATION_S, "soft_close_s": SOFT_S, "extension_cap_s": CAP_S},
            now=start,
        )  # fmt: skip
        aid = auction["id"]
        first: dict[tuple[int, int], dict[str, Any]] = {}
        closes: list[bool] = []
        last_price = START

        async def run(step: tuple[Any, ...]) -> None:
            if step[0] == "bid":
                _, user, amount_n, max_n, key = step
                amount = START + amount_n * 50
                reply = await bid(
                    app, bidders[user], aid, amount, f"k{key}",
                    amount + max_n * 100 if max_n else 0, now=clock[0],
                )  # fmt: skip
                assert first.setdefault((user, key), reply) == reply
            elif step[0] == "clock":
                clock[0] += step[1]
            else:
                closed, _ = await close_auction(app, aid, now=clock[0], force=step[1])
                closes.append(closed)

        for group in plan:
            await asyncio.gather(*(run(step) for step in group))
            state = await get_auction(app, aid, now=clock[0])
            assert state["price"] >= last_price
            last_price = state["price"]
            assert state["ends_at"] <= auction["ends_at"] + CAP_S * 1000
            log = [b for b in await bid_log(app, show_id) if b["a"] == aid]
            accepted = [b for b in log if b["outcome"] in ("leading", "outbid_by_higher")]
            end = auction["ends_at"]
            for entry in accepted:
                assert entry["at"] < end  # decided before the end in force then
                end = entry["ends_at"]
            if accepted:
                ceiling = int(await app[REDIS].hget(ck.auctions(show_id), f"{aid}:ceiling"))
                leader = accepted[-1]["leader"]
                assert ceiling >= max(b["ceiling"] for b in accepted)
                best = [b for b in accepted if b["ceiling"] == ceiling]
                assert best[0]["u"] == leader  # the earliest highest bid leads
                assert state["price"] >= max(b["amount"] for b in accepted)
                assert state["price"] <= ceiling
            assert closes.count(True) <= 1
            won = [o for o in await orders(app, show_id) if o["sale_id"] == aid]
            assert len(won) <= 1
            if state["closed"] and accepted:
                assert len(won) == 1 and won[0]["user_id"] == accepted[-1]["leader"]
                assert won[0]["price"] == state["price"]
            elif not accepted:
                assert not won


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=plans)
def test_bid_stampedes_keep_auction_invariants(
    redis_url: str, plan: list[list[tuple[Any, ...]]]
) -> None:
    asyncio.run(scenario(redis_url, plan))

"""Votes through two server processes: exact tallies, throttled broadcasts on both nodes, one close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.commerce.conftest import TwoNodes, wait_for

pytestmark = pytest.mark.slow


async def test_two_nodes_count_every_vote_once(two_nodes: TwoNodes) -> None:
    cluster = two_nodes
    a, b = cluster.a, cluster.b
    show_id, host = await cluster.show("Poll on two nodes")
    poll = (
        await cluster.call(
            "POST",
            f"{a}/api/shows/{show_id}/polls",
            host,
            {"question": "Next?", "options": ["Red", "Blue", "Green"]},
        )  # fmt: skip
    )["poll"]
    events = await cluster.watch(show_id)
    voters = [cluster.viewer(show_id, f"V{i}") for i in range(300)]

    async def vote(i: int) -> dict[str, Any]:
        url = f"{cluster.url(i)}/api/polls/{poll['id']}/vote"
        first = await cluster.call("POST", url, voters[i], {"option": i % 3})
        url = f"{cluster.url(i + 1)}/api/polls/{poll['id']}/vote"
        again = await cluster.call("POST", url, voters[i], {"option": (i + 1) % 3})
        assert again["outcome"] == "already_voted" and again["option"] == i % 3
        return dict(first)

    replies = await asyncio.gather(*(vote(i) for i in range(300)))
    assert all(r["outcome"] == "voted" for r in replies)
    closed = (await cluster.call("POST", f"{b}/api/polls/{poll['id']}/close", host))["poll"]
    assert closed["tallies"] == [100, 100, 100] and closed["total"] == 300
    await wait_for(
        lambda: asyncio.sleep(0, any(e.get("type") == "poll.closed" for e in events)), 10
    )
    tallies = [e for e in events if e.get("type") == "poll.tally"]
    assert len(tallies) < 300  # counters, throttled: never one event per vote
    assert [e["tallies"] for e in events if e.get("type") == "poll.closed"] == [[100, 100, 100]]
    kept = (await cluster.call("GET", f"{a}/api/polls/{poll['id']}"))["poll"]
    assert kept["final"] and kept["tallies"] == [100, 100, 100]

"""Votes through two server processes: exact tallies, throttled broadcasts on both nodes, one close."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from loadtest.client import ShowSocket, call, create_show
from server import auth
from tests.conftest import API_KEY

pytestmark = pytest.mark.slow


async def test_two_nodes_count_every_vote_once(redis_url: str, server_proc: Any) -> None:
    nodes = [server_proc("--redis-url", redis_url, "--secret", "test-secret") for _ in range(2)]
    a, b = nodes[0].url, nodes[1].url
    async with aiohttp.ClientSession() as http:
        show_id, host = await create_show(http, a, "Poll on two nodes", API_KEY)
        poll = (
            await call(
                http,
                "POST",
                f"{a}/api/shows/{show_id}/polls",
                host,
                {"question": "Next?", "options": ["Red", "Blue", "Green"]},
            )  # fmt: skip
        )["poll"]
        events: list[dict[str, Any]] = []
        watcher = auth.issue("test-secret", show_id=show_id, role="viewer", name="W")
        socket = ShowSocket(http, b, show_id, watcher, on_events=events.extend)
        await socket.connect()
        voters = [
            auth.issue("test-secret", show_id=show_id, role="viewer", name=f"V{i}")
            for i in range(300)
        ]

        async def vote(i: int) -> dict[str, Any]:
            url = f"{nodes[i % 2].url}/api/polls/{poll['id']}/vote"
            first = await call(http, "POST", url, voters[i], {"option": i % 3})
            url = f"{nodes[(i + 1) % 2].url}/api/polls/{poll['id']}/vote"
            again = await call(http, "POST", url, voters[i], {"option": (i + 1) % 3})
            assert again["outcome"] == "already_voted" and again["option"] == i % 3
            return dict(first)

        replies = await asyncio.gather(*(vote(i) for i in range(300)))
        assert all(r["outcome"] == "voted" for r in replies)
        closed = (await call(http, "POST", f"{b}/api/polls/{poll['id']}/close", host))["poll"]
        assert closed["tallies"] == [100, 100, 100] and closed["total"] == 300
        deadline = asyncio.get_running_loop().time() + 10
        while not any(e.get("type") == "poll.closed" for e in events):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        tallies = [e for e in events if e.get("type") == "poll.tally"]
        assert len(tallies) < 300  # counters, throttled: never one event per vote
        assert [e["tallies"] for e in events if e.get("type") == "poll.closed"] == [[100, 100, 100]]
        kept = (await call(http, "GET", f"{a}/api/polls/{poll['id']}"))["poll"]
        assert kept["final"] and kept["tallies"] == [100, 100, 100]
        await socket.close()

"""Polls over HTTP and WebSocket on the real app and Redis: votes, roles, throttled tallies, frozen results."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.commerce.conftest import EventLog, Shop


async def make_poll(shop: Shop, **fields: Any) -> dict[str, Any]:
    body = {"question": "Next?", "options": ["Red", shop.product_id], "duration_s": 60, **fields}
    status, reply = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/polls", shop.host_token, **body
    )
    assert status == 201, reply
    return dict(reply["poll"])


async def test_votes_once_per_user_and_results_freeze_at_close(
    shop: Shop, events: EventLog
) -> None:
    poll = await make_poll(shop)
    assert poll["options"][1] == {"label": "Aero Runner", "product_id": shop.product_id}
    assert poll["tallies"] == [0, 0] and poll["status"] == "open"
    voters = [await shop.buyer(f"V{i}") for i in range(3)]
    path = f"/api/polls/{poll['id']}"
    answers = [
        (await shop.call("POST", path + "/vote", t, option=i % 2))[1] for i, t in enumerate(voters)
    ]
    assert [a["outcome"] for a in answers] == ["voted"] * 3
    # Not changeable: a second vote keeps the first and says so.
    status, again = await shop.call("POST", path + "/vote", voters[0], option=1)
    assert status == 200 and again == {
        "outcome": "already_voted",
        "poll_id": poll["id"],
        "option": 0,
    }
    tally = await events.wait_for("poll.tally", poll_id=poll["id"], tallies=[2, 1])
    assert tally and tally[-1]["total"] == 3
    status, closed = await shop.call("POST", path + "/close", shop.host_token)
    assert status == 200 and closed["poll"]["final"] and closed["poll"]["tallies"] == [2, 1]
    late = await shop.buyer("Late")
    assert (await shop.call("POST", path + "/vote", late, option=1))[1]["outcome"] == "closed"
    _, kept = await shop.call("GET", path)
    assert kept["poll"]["tallies"] == [2, 1] and kept["poll"]["status"] == "closed"
    ended = await events.wait_for("poll.closed", poll_id=poll["id"])
    assert len(ended) == 1 and ended[0]["tallies"] == [2, 1]


async def test_changeable_vote_moves_the_count(shop: Shop) -> None:
    poll = await make_poll(shop, options=["A", "B", "C"], changeable=True)
    viewer = await shop.buyer()
    path = f"/api/polls/{poll['id']}/vote"
    assert (await shop.call("POST", path, viewer, option=0))[1]["outcome"] == "voted"
    assert (await shop.call("POST", path, viewer, option=2))[1]["outcome"] == "changed"
    _, body = await shop.call("GET", f"/api/polls/{poll['id']}")
    assert body["poll"]["tallies"] == [0, 0, 1] and body["poll"]["total"] == 1


async def test_tallies_broadcast_at_most_every_250_ms(shop: Shop, events: EventLog) -> None:
    poll = await make_poll(shop, options=["A", "B"])
    voters = [await shop.buyer() for _ in range(40)]
    path = f"/api/polls/{poll['id']}/vote"
    for token in voters:
        await shop.call("POST", path, token, option=0)
        await asyncio.sleep(0.01)  # votes spread over time: the throttle is what is tested
    await events.wait_for("poll.tally", poll_id=poll["id"], total=40)
    tallies = [e for e in await events.of("poll.tally") if e["poll_id"] == poll["id"]]
    assert 1 <= len(tallies) < 40  # counters, not one event per vote


async def test_bad_polls_are_refused_with_codes(shop: Shop) -> None:
    base = f"/api/shows/{shop.show_id}/polls"
    for body, field in (
        ({"question": "Q", "options": ["only"]}, "options"),
        ({"question": "Q", "options": list("abcdefg")}, "options"),
        ({"question": "", "options": ["a", "b"]}, "question"),
        ({"question": "Q", "options": ["a", "b"], "duration_s": 1}, "duration_s"),
        ({"question": "Q", "options": ["a", "b"], "changeable": "yes"}, "changeable"),
    ):
        status, reply = await shop.call("POST", base, shop.host_token, **body)
        assert status == 400 and reply["error"]["details"]["field"] == field, reply
    status, reply = await shop.call(
        "POST", base, shop.host_token, question="Q", options=["a", f"{shop.show_id}.p999"]
    )
    assert status == 404 and reply["error"]["code"] == "product_not_found"
    poll = await make_poll(shop)
    viewer = await shop.buyer()
    status, reply = await shop.call("POST", f"/api/polls/{poll['id']}/vote", viewer, option=5)
    assert status == 400 and reply["error"]["code"] == "bad_field"
    status, reply = await shop.call(
        "POST", f"/api/polls/{shop.show_id}.q999/vote", viewer, option=0
    )
    assert status == 404 and reply["error"]["code"] == "poll_not_found"
    _, listed = await shop.call("GET", base)
    assert [p["id"] for p in listed["polls"]] == [poll["id"]]  # nothing half-written


async def test_viewer_cannot_create_or_close_a_poll(shop: Shop) -> None:
    viewer = await shop.buyer()
    status, reply = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/polls", viewer, question="Q", options=["a", "b"]
    )
    assert status == 403 and reply["error"]["code"] == "forbidden"
    poll = await make_poll(shop)
    status, reply = await shop.call("POST", f"/api/polls/{poll['id']}/close", viewer)
    assert status == 403
    ws = await shop.client.ws_connect(
        f"/ws/{shop.show_id}?token={viewer}", protocols=("liveshop.json",)
    )
    try:
        await ws.send_json({"type": "poll.create", "id": 1, "question": "Q", "options": ["a", "b"]})
        await ws.send_json({"type": "poll.close", "id": 2, "poll_id": poll["id"]})
        await ws.send_json({"type": "poll.vote", "id": 3, "poll_id": poll["id"], "option": 1})
        got: dict[int, dict[str, Any]] = {}
        async with asyncio.timeout(5):
            while len(got) < 3:
                message = json.loads((await ws.receive()).data)
                if message.get("id") in (1, 2, 3):
                    got[message["id"]] = message
        assert got[1]["type"] == "error" and got[1]["code"] == "forbidden"
        assert got[2]["type"] == "error" and got[2]["code"] == "forbidden"
        assert got[3]["type"] == "reply" and got[3]["outcome"] == "voted"
    finally:
        await ws.close()
    _, body = await shop.call("GET", f"/api/polls/{poll['id']}")
    assert body["poll"]["status"] == "open" and body["poll"]["tallies"] == [0, 1]


async def test_host_stats_count_votes_bids_and_group_joins(shop: Shop) -> None:
    poll = await make_poll(shop)
    viewer = await shop.buyer()
    await shop.call("POST", f"/api/polls/{poll['id']}/vote", viewer, option=0)
    status, auction = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/auctions", shop.host_token,
        product_id=shop.product_id, start_price=100,
    )  # fmt: skip
    assert status == 201
    await shop.call(
        "POST", f"/api/auctions/{auction['auction']['id']}/bid", viewer, amount=100, key="b"
    )
    status, deal = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/group-buys", shop.host_token,
        product_id=shop.product_id, group_price=100, group_size=2,
    )  # fmt: skip
    assert status == 201
    await shop.call("POST", f"/api/group-buys/{deal['deal']['id']}/join", viewer)
    _, body = await shop.call("GET", f"/api/shows/{shop.show_id}/stats", shop.host_token)
    stats = body["stats"]
    assert (stats["votes"], stats["bids"], stats["group_joins"]) == (1, 1, 1)
    assert (stats["funnel"]["voted"], stats["funnel"]["bid"], stats["funnel"]["group_joined"]) == (
        1,
        1,
        1,
    )


async def test_host_creates_and_closes_a_poll_over_websocket(shop: Shop) -> None:
    ws = await shop.client.ws_connect(
        f"/ws/{shop.show_id}?token={shop.host_token}", protocols=("liveshop.json",)
    )
    try:
        await ws.send_json(
            {
                "type": "poll.create",
                "id": 1,
                "question": "Q?",
                "options": ["a", "b"],
                "changeable": True,
            }
        )
        await ws.send_json({"type": "poll.create", "id": 2, "question": "Q?", "options": "a,b"})
        got: dict[int, dict[str, Any]] = {}
        async with asyncio.timeout(5):
            while len(got) < 2:
                message = json.loads((await ws.receive()).data)
                if message.get("id") in (1, 2):
                    got[message["id"]] = message
        assert got[1]["type"] == "reply" and got[1]["poll"]["changeable"] is True
        assert got[2]["code"] == "bad_field" and got[2]["field"] == "options"
        poll_id = got[1]["poll"]["id"]
        await ws.send_json({"type": "poll.close", "id": 3, "poll_id": poll_id})
        async with asyncio.timeout(5):
            while True:
                message = json.loads((await ws.receive()).data)
                if message.get("id") == 3:
                    break
        assert message["poll"]["final"] is True
    finally:
        await ws.close()

"""PK battles in one process: who may invite/accept/end, the 409/403 paths, scores on both shows'
channels, one result per battle, the audit trail. Real Redis, real aiortc publishers (a PK needs
two live shows); the two-process battle with media is in test_pk_multinode.py."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from media.aiortc_internals import configure_ice
from media.publish import Publisher, PublishOptions
from server.appkeys import COMMANDS, REDIS
from server.realtime.pk import ACTIVE, PK, pk_key, pointer_key, sign_invite
from server.redis import keys

from .conftest import WsClient
from .test_registry import check

TINY = PublishOptions(codec="vp8", width=160, height=120, fps=15, bitrate=150_000, audio=False)


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def __call__(
        self, method: str, path: str, token: str | None, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await self.client.request(method, path, json=body, headers=headers)
        return resp.status, await resp.json()


class Live:
    """Shows made through the API, then put live by real aiortc publishers (stopped at teardown).

    Tests open their WebSockets between the two steps: on this shared 2-core machine the first
    seconds of three in-process publishers can stall the loop, and the welcome waits only 5 s.
    """

    def __init__(self, client: TestClient, make_show: Any) -> None:
        self.client, self.make_show = client, make_show
        self.publishers: list[Publisher] = []

    async def shows(self, n: int) -> list[tuple[str, str]]:
        return [await self.make_show(f"PK show {i}") for i in range(n)]

    async def publish(self, shows: list[tuple[str, str]]) -> None:
        base = str(self.client.make_url("")).rstrip("/")
        for show_id, host in shows:
            publisher = Publisher(base, show_id, host, TINY)
            await publisher.start()
            self.publishers.append(publisher)
        for show_id, _ in shows:
            await until_live(self.client, show_id)


@pytest.fixture
async def live(client: TestClient, make_show: Any) -> Any:
    configure_ice(["127.0.0.1"])
    shows = Live(client, make_show)
    yield shows
    for publisher in shows.publishers:
        await publisher.stop()


async def until_live(http: Any, show_id: str, base: str = "", within_s: float = 20) -> None:
    """Wait for the show to go live: its publisher's media arrived (status live, origin claimed)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        async with http.get(f"{base}/api/shows/{show_id}") as resp:
            if (await resp.json())["show"]["status"] == "live":
                return
        assert asyncio.get_running_loop().time() < deadline, f"{show_id} never went live"
        await asyncio.sleep(0.05)


async def _ws(connect: Any, show_id: str, token: str) -> WsClient:
    return await connect(show_id, token)


def _tampered(invite: str) -> str:
    """The invite with its payload's target changed and the old signature kept."""
    head, payload, sig = invite.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["dur"] = 3600
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{raw}.{sig}"


async def test_invite_accept_score_and_end_with_roles_and_bad_input(
    client: TestClient, live: Any, make_show: Any, mint: Any, connect: Any
) -> None:
    api = Api(client)
    shows = await live.shows(3)
    (a, host_a), (b, host_b), (c, host_c) = shows
    idle, _ = await make_show("not live")
    viewer_a, _ = await mint(a, host_a, "viewer", "Va")
    mod_a, _ = await mint(a, host_a, "moderator", "Ma")
    viewer_b, _ = await mint(b, host_b, "viewer", "Vb")
    studio_b = await _ws(connect, b, host_b)
    watch_a = await _ws(connect, a, viewer_a)
    watch_b = await _ws(connect, b, viewer_b)
    await live.publish(shows)

    # Only the host invites; a viewer or moderator gets 403.
    for token in (viewer_a, mod_a):
        status, body = await api("POST", f"/api/shows/{a}/pk", token, {"show_id": b})
        assert status == 403 and body["error"]["code"] == "forbidden", body
    status, body = await api("POST", f"/api/shows/{a}/pk", host_a, {"show_id": idle})
    assert status == 409 and body["error"]["code"] == "not_live", body
    assert body["error"]["details"]["show_id"] == idle
    status, body = await api("POST", f"/api/shows/{a}/pk", host_a, {"show_id": a})
    assert status == 400 and body["error"]["code"] == "bad_field", body
    status, body = await api("POST", f"/api/shows/{a}/pk", host_a, {"show_id": "nope"})
    assert status == 404 and body["error"]["code"] == "show_not_found", body

    status, sent = await api("POST", f"/api/shows/{a}/pk", host_a, {"show_id": b, "duration_s": 60})
    assert status == 201 and sent["to"] == b, sent
    await studio_b.until(lambda w: bool(w.of_type("pk.invited")), 15)
    invited = studio_b.of_type("pk.invited")[0]
    assert invited["invite"] == sent["invite"] and invited["from"]["show_id"] == a
    await watch_b.pump(0.3)
    assert not watch_b.of_type("pk.invited")  # staff only: viewers never see the invite

    # Forged, altered, misdirected invites: 403, and nothing was written.
    forged = jwt.encode({"jti": "x", "from": a, "to": b, "dur": 60, "exp": 2**31}, "guess")
    other_secret = sign_invite("another-secret", {"jti": "y", "from": a, "to": b, "dur": 60}, 60)
    for bad in (forged, other_secret, _tampered(sent["invite"]), "not-a-jwt"):
        status, body = await api("POST", f"/api/shows/{b}/pk/accept", host_b, {"invite": bad})
        assert status == 403 and body["error"]["code"] == "bad_invite", (bad, body)
    status, body = await api(
        "POST", f"/api/shows/{c}/pk/accept", host_c, {"invite": sent["invite"]}
    )
    assert status == 403 and body["error"]["code"] == "bad_invite", body
    status, body = await api(
        "POST", f"/api/shows/{b}/pk/accept", viewer_b, {"invite": sent["invite"]}
    )
    assert status == 403 and body["error"]["code"] == "forbidden", body
    redis = client.app[REDIS]
    assert not await redis.exists(pointer_key(a), pointer_key(b), pk_key(sent["pk_id"]))
    expired = sign_invite("test-secret", {"jti": "z", "from": a, "to": b, "dur": 60}, -120)
    status, body = await api("POST", f"/api/shows/{b}/pk/accept", host_b, {"invite": expired})
    assert status == 410 and body["error"]["code"] == "invite_expired", body

    status, body = await api(
        "POST", f"/api/shows/{b}/pk/accept", host_b, {"invite": sent["invite"]}
    )
    assert status == 200 and body["pk"]["status"] == "active", body
    assert body["pk"]["opponent"] == a and body["pk"]["scores"] == {a: 0, b: 0}
    for ws in (watch_a, watch_b):
        await ws.until(lambda w: bool(w.of_type("pk.started")), 15)
    assert watch_a.of_type("pk.started") == watch_b.of_type("pk.started")

    # Already in a PK: 409 for a new invite either way and for the used invite.
    status, body = await api("POST", f"/api/shows/{c}/pk", host_c, {"show_id": a})
    assert status == 409 and body["error"]["code"] == "already_in_pk", body
    status, body = await api("POST", f"/api/shows/{a}/pk", host_a, {"show_id": c})
    assert status == 409 and body["error"]["code"] == "already_in_pk", body
    status, body = await api(
        "POST", f"/api/shows/{b}/pk/accept", host_b, {"invite": sent["invite"]}
    )
    assert status == 409, body

    # A viewer's view: the PK and a token to watch the opponent (WHEP of the other show).
    status, view = await api("GET", f"/api/shows/{a}/pk", viewer_a)
    assert status == 200 and view["pk"]["opponent"] == b and view["opponent_token"]
    opponent_claims = jwt.decode(view["opponent_token"], options={"verify_signature": False})
    assert opponent_claims["show"] == b and opponent_claims["role"] == "viewer"

    # Likes on both sides: one score set, the same events on both channels.
    await watch_a.send({"type": "like", "count": 5})
    await watch_b.send({"type": "like", "count": 3})

    def scored(ws: WsClient) -> bool:
        return any(e["scores"] == {a: 5, b: 3} for e in ws.of_type("pk.score"))

    for ws in (watch_a, watch_b):
        await ws.until(scored, 15)
    assert watch_a.of_type("pk.score") == watch_b.of_type("pk.score")

    # Only a host ends it; the end is announced once in each show, cancelled (no winner).
    for token in (viewer_a, mod_a):
        status, body = await api("POST", f"/api/shows/{a}/pk/end", token)
        assert status == 403, body
    status, body = await api("POST", f"/api/shows/{b}/pk/end", host_b)
    assert status == 200 and body["pk"]["status"] == "ended", body
    assert body["pk"]["result"] == "cancelled" and body["pk"]["reason"] == "ended_by_host"
    status, body = await api("POST", f"/api/shows/{a}/pk/end", host_a)
    assert status == 409 and body["error"]["code"] == "not_in_pk", body
    for ws in (watch_a, watch_b):
        await ws.until(lambda w: bool(w.of_type("pk.ended")), 15)
        await ws.pump(0.3)
        assert len(ws.of_type("pk.ended")) == 1
    assert not await redis.exists(pointer_key(a), pointer_key(b))
    assert not await redis.zscore(ACTIVE, sent["pk_id"])

    # Every action is in the audit streams of both shows.
    actions_a = [e[1]["action"] for e in await redis.xrange(keys.audit(a))]
    actions_b = [e[1]["action"] for e in await redis.xrange(keys.audit(b))]
    assert actions_a == ["pk.invite", "pk.start", "pk.end"], actions_a
    assert actions_b == ["pk.start", "pk.end"], actions_b

    # Every pk.* frame sent matches its declared Event (docs/protocol.md is generated from them).
    registry = client.app[COMMANDS]
    frames = [e for ws in (studio_b, watch_a, watch_b) for e in ws.events if e["type"][:3] == "pk."]
    assert {check(registry, e) for e in frames} == {
        "pk.invited",
        "pk.started",
        "pk.score",
        "pk.ended",
    }

    # After the end both shows are free again.
    status, body = await api("POST", f"/api/shows/{a}/pk", host_a, {"show_id": b})
    assert status == 201, body


async def test_time_up_names_the_winner_once_and_points_outside_the_window_do_not_count(
    client: TestClient, live: Any, mint: Any, connect: Any
) -> None:
    api = Api(client)
    shows = await live.shows(2)
    (a, host_a), (b, host_b) = shows
    viewer_a, _ = await mint(a, host_a, "viewer", "Va")
    watch_a = await _ws(connect, a, viewer_a)
    await live.publish(shows)
    status, sent = await api(
        "POST", f"/api/shows/{a}/pk", host_a, {"show_id": b, "duration_s": 5, "like_points": 2}
    )
    assert status == 201, sent
    status, body = await api(
        "POST", f"/api/shows/{b}/pk/accept", host_b, {"invite": sent["invite"]}
    )
    assert status == 200, body
    service = client.app[PK]
    await service.add_points(a, likes=4)  # 8 points
    await service.add_points(b, gmv=150)  # 1.50 paid: 1 point
    await watch_a.until(lambda w: bool(w.of_type("pk.ended")), 15)
    ended = watch_a.of_type("pk.ended")
    assert len(ended) == 1 and ended[0]["result"] == "win" and ended[0]["winner"] == a
    assert ended[0]["scores"] == {a: 8, b: 1} and ended[0]["reason"] == "time_up"
    await service.add_points(b, likes=100)  # after the end: not counted
    status, view = await api("GET", f"/api/shows/{b}/pk", host_b)
    assert status == 200 and view["pk"] is None  # the pointer is gone with the battle
    record = await service.record(sent["pk_id"])
    assert record["score:b"] == "1" and record["status"] == "ended"
    await asyncio.sleep(0)  # ticker passes on other nodes would find nothing left to end
    assert await service.finish(sent["pk_id"], "time_up") == {}

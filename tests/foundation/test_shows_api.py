"""Shows, token minting and guest tokens over HTTP, against the real Redis."""

from __future__ import annotations

from pathlib import Path

from server import auth
from server.app import create_app
from server.config import Settings
from server.demo import ensure_demo
from server.redis.embedded import EmbeddedRedis
from tests.conftest import OPERATOR


async def test_create_get_and_list_show(client) -> None:
    resp = await client.post(
        "/api/shows", json={"title": "Sneaker drop", "host_name": "Ann"}, headers=OPERATOR
    )
    assert resp.status == 201
    body = await resp.json()
    show = body["show"]
    assert (
        show["title"] == "Sneaker drop"
        and show["host_name"] == "Ann"
        and show["status"] == "upcoming"
    )
    claims = auth.verify("test-secret", body["host_token"], show["id"])
    assert claims.role == "host"
    got = await (await client.get(f"/api/shows/{show['id']}")).json()
    assert got["show"] == show
    listing = await (await client.get("/api/shows")).json()
    assert show["id"] in [s["id"] for s in listing["shows"]]


async def test_create_show_rejects_bad_input(client) -> None:
    for payload, code in [
        ({"title": ""}, "bad_field"),
        ({"title": "x" * 500}, "bad_field"),
        ({"id": "../etc"}, "bad_show_id"),
    ]:
        resp = await client.post("/api/shows", json=payload, headers=OPERATOR)
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == code
    resp = await client.post(
        "/api/shows",
        data=b"{not json",
        headers={"Content-Type": "application/json", **OPERATOR},
    )
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_json"
    resp = await client.post("/api/shows", data=b"[1,2]", headers=OPERATOR)
    assert (await resp.json())["error"]["code"] == "bad_json"


async def test_duplicate_show_id_conflicts(client) -> None:
    assert (await client.post("/api/shows", json={"id": "dup-show"}, headers=OPERATOR)).status in (
        201,
        409,
    )
    resp = await client.post("/api/shows", json={"id": "dup-show"}, headers=OPERATOR)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "show_exists"


async def test_unknown_show_is_404(client) -> None:
    resp = await client.get("/api/shows/nope-not-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "show_not_found"


async def test_host_mints_moderator_token_viewer_cannot(client, make_show, guest_token) -> None:
    show_id, host_token = await make_show()
    resp = await client.post(
        f"/api/shows/{show_id}/tokens",
        json={"role": "moderator", "name": "Op"},
        headers={"Authorization": f"Bearer {host_token}"},
    )
    assert resp.status == 201
    minted = await resp.json()
    assert auth.verify("test-secret", minted["token"], show_id).role == "moderator"
    viewer = await guest_token(show_id)
    resp = await client.post(
        f"/api/shows/{show_id}/tokens",
        json={"role": "moderator"},
        headers={"Authorization": f"Bearer {viewer}"},
    )
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
    resp = await client.post(f"/api/shows/{show_id}/tokens", json={"role": "moderator"})
    assert resp.status == 401
    resp = await client.post(
        f"/api/shows/{show_id}/tokens",
        json={"role": "host"},
        headers={"Authorization": f"Bearer {host_token}"},
    )
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "operator_required"


async def test_host_token_of_one_show_is_useless_on_another(client, make_show) -> None:
    _, host_a = await make_show()
    show_b, _ = await make_show()
    resp = await client.post(
        f"/api/shows/{show_b}/tokens", json={}, headers={"Authorization": f"Bearer {host_a}"}
    )
    assert resp.status == 403


async def test_guest_tokens_are_rate_limited_per_ip(aiohttp_client, settings: Settings) -> None:
    settings.guest_per_minute = 2
    limited = await aiohttp_client(create_app(settings))
    show = await (await limited.post("/api/shows", json={}, headers=OPERATOR)).json()
    show_id = show["show"]["id"]
    statuses = []
    for _ in range(3):
        statuses.append(
            (await limited.post(f"/api/shows/{show_id}/guest", json={"name": "Zoe"})).status
        )
    # The per-minute bucket is shared by every test from 127.0.0.1: only the last can be asserted exactly.
    assert statuses[-1] == 429


async def test_guest_token_is_a_viewer(client, make_show, guest_token) -> None:
    show_id, _ = await make_show()
    claims = auth.verify("test-secret", await guest_token(show_id, "Zoe"), show_id)
    assert claims.role == "viewer" and claims.guest and claims.name == "Zoe"


async def test_healthz_is_503_when_redis_goes_away(aiohttp_client, tmp_path: Path) -> None:
    embedded = EmbeddedRedis(tmp_path / "r")
    url = embedded.start()
    try:
        client = await aiohttp_client(
            create_app(Settings(redis_url=url, data_dir=tmp_path / "d", secret="x"))
        )
        assert (await client.get("/healthz")).status == 200
    finally:
        embedded.stop()
    resp = await client.get("/healthz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unavailable" and body["redis"]["ok"] is False


async def test_demo_show_is_created_once(aiohttp_client, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings))
    first = await ensure_demo(client.app)
    second = await ensure_demo(client.app)
    assert first["show_id"] == second["show_id"] == "demo"
    assert first["viewer_url"].endswith("/watch/demo")
    assert "#token=" in first["host_url"]


async def test_unknown_route_gives_json_error(client) -> None:
    resp = await client.get("/api/definitely-not")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_a_burst_beyond_the_pool_queues_instead_of_failing(client, make_show) -> None:
    """More concurrent requests than Redis connections: all answered, none fails with 500."""
    import asyncio

    show_id, _ = await make_show()
    responses = await asyncio.gather(*(client.get(f"/api/shows/{show_id}") for _ in range(600)))
    assert [r.status for r in responses].count(200) == 600

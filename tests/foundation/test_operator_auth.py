"""Operator API keys and standard JWTs: who may open a show, mint a host token, sign a token."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import jwt
import pytest

from server import auth
from server.app import create_app
from server.appkeys import SETTINGS
from server.config import Settings
from server.errors import ApiError
from tests.conftest import API_KEY, OPERATOR, http_json

API_ID, API_SECRET = API_KEY.split(":", 1)
PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def platform_token(show_id: str, sub: object, role: str = "viewer", **overrides: object) -> str:
    """What a platform's backend does (the docs/protocol.md example): PyJWT with the API key."""
    now = int(time.time())
    claims = {"sub": sub, "name": "Pat", "role": role, "show": show_id}
    claims |= {"iat": now, "nbf": now, "exp": now + 600, **overrides}
    return jwt.encode(claims, API_SECRET, algorithm="HS256", headers={"kid": API_ID})


async def test_creating_a_show_needs_the_operator_key(client) -> None:
    for headers in ({}, {"Authorization": "Bearer test:wrong-secret-0123456789"},
                    {"Authorization": "Bearer " + API_SECRET}, {"Authorization": "Basic x"}):  # fmt: skip
        resp = await client.post("/api/shows", json={"title": "x"}, headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["error"]["code"] == "operator_required"
    resp = await client.post("/api/shows", json={"title": "ok"}, headers=OPERATOR)
    assert resp.status == 201


async def test_a_host_token_is_not_an_operator_key(client, make_show) -> None:
    _, host_token = await make_show()
    resp = await client.post(
        "/api/shows", json={}, headers={"Authorization": f"Bearer {host_token}"}
    )
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "operator_required"


async def test_every_401_says_www_authenticate(client, make_show) -> None:
    show_id, _ = await make_show()
    resp = await client.post(f"/api/shows/{show_id}/tokens", json={"role": "viewer"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_several_keys_rotate(aiohttp_client, settings: Settings) -> None:
    rotated = replace(settings, api_key=["old:old-secret-0123456789", "new:new-secret-0123456789"])
    node = await aiohttp_client(create_app(rotated))
    for key in rotated.api_key:
        resp = await node.post("/api/shows", json={}, headers={"Authorization": f"Bearer {key}"})
        assert resp.status == 201
    resp = await node.post("/api/shows", json={}, headers=OPERATOR)  # not configured here
    assert resp.status == 401


async def test_operator_mints_host_tokens_host_cannot(client, make_show) -> None:
    show_id, host_token = await make_show()
    resp = await client.post(
        f"/api/shows/{show_id}/tokens", json={"role": "host", "name": "Co-host"}, headers=OPERATOR
    )
    assert resp.status == 201
    minted = await resp.json()
    claims = auth.verify("test-secret", minted["token"], show_id)
    assert (claims.role, claims.user_id) == ("host", "host_" + show_id)
    resp = await client.post(  # the minted host token works as the host
        f"/api/shows/{show_id}/tokens",
        json={"role": "moderator"},
        headers={"Authorization": f"Bearer {minted['token']}"},
    )
    assert resp.status == 201
    resp = await client.post(
        f"/api/shows/{show_id}/tokens",
        json={"role": "host"},
        headers={"Authorization": f"Bearer {host_token}"},
    )
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "operator_required"


async def test_tokens_are_standard_jwts(client, make_show, guest_token) -> None:
    show_id, host_token = await make_show()
    for token in (host_token, await guest_token(show_id, "Gia")):
        header = jwt.get_unverified_header(token)
        assert header == {"alg": "HS256", "kid": "liveshop", "typ": "JWT"}
        payload = jwt.decode(token, "test-secret", algorithms=["HS256"])
        assert set(payload) >= {"sub", "name", "role", "show", "exp", "nbf", "iat"}
        assert payload["show"] == show_id and payload["exp"] > payload["iat"]
    assert jwt.decode(await guest_token(show_id), "test-secret", algorithms=["HS256"])["guest"]


async def test_a_platform_minted_token_works_everywhere(client, make_show) -> None:
    show_id, _ = await make_show()
    token = platform_token(show_id, "shop-user-42")
    resp = await client.get(
        f"/api/shows/{show_id}/orders", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status in (200, 403)  # authenticated: the viewer reaches the role check
    ws = await client.ws_connect(f"/ws/{show_id}?token={token}", protocols=("liveshop.json",))
    welcome = await ws.receive_json(timeout=5)
    assert welcome["type"] == "welcome" and welcome["user"]["id"] == "shop-user-42"
    await ws.close()
    moderator = platform_token(show_id, "shop-mod-1", role="moderator")
    assert auth.verify(auth.keyring_of(client.app[SETTINGS]), moderator).is_staff


def test_bad_platform_tokens_are_refused() -> None:
    keys = auth.Keyring("server-secret-0123456789", {API_ID: API_SECRET})
    now = int(time.time())
    bad = [
        platform_token("s", "u", exp=now - 2 * auth.LEEWAY_S),  # expired
        platform_token("s", "u", nbf=now + 2 * auth.LEEWAY_S),  # not valid yet
        platform_token("s", "u", role="admin"),
        platform_token("s", 7),  # type: ignore[arg-type]
        platform_token("s", "u", name="x" * 500),
        jwt.encode(
            {"sub": "u", "role": "viewer", "show": "s"}, API_SECRET, headers={"kid": API_ID}
        ),
        jwt.encode({"sub": "u"}, API_SECRET, algorithm="HS256", headers={"kid": "other"}),
        jwt.encode(
            {"sub": "u", "role": "host", "show": "s", "iat": now, "nbf": now, "exp": now + 60},
            None,
            algorithm="none",
            headers={"kid": API_ID},
        ),  # fmt: skip
        platform_token("s", "u")[:-3] + "abc",
        "not.a.jwt",
    ]
    for token in bad:
        with pytest.raises(ApiError) as err:
            auth.verify(keys, token, "s")
        assert err.value.status == 401, token
    # Clock skew within the leeway is tolerated both ways.
    skewed = platform_token("s", "u", iat=now + 20, nbf=now + 20, exp=now - 20 + 600)
    assert auth.verify(keys, skewed, "s").user_id == "u"
    late = platform_token("s", "u", exp=now - 10)
    assert auth.verify(keys, late, "s").user_id == "u"


@pytest.mark.parametrize(
    "entries",
    [
        ["nocolon-0123456789abcdef"],
        ["id:short"],
        ["liveshop:0123456789abcdef"],
        ["a b:0123456789abcdef"],
        ["k:0123456789abcdef", "k:fedcba9876543210"],
    ],  # fmt: skip
)
def test_bad_api_key_entries_are_refused(entries: list[str]) -> None:
    with pytest.raises(ValueError):
        auth.parse_api_keys(entries)


def test_generated_key_is_printed_once_and_kept(server_proc, tmp_path: Path) -> None:
    data_dir = tmp_path / "keygen"
    first = server_proc("--api-key", "", data_dir=data_dir)
    key = (data_dir / "api_key").read_text().strip()
    assert (data_dir / "api_key").stat().st_mode & 0o777 == 0o600
    assert key in first.log()
    status, body = http_json(first.url + "/api/shows", "POST", {"title": "k"}, key)
    assert status == 201, body
    assert first.stop() == 0
    second = server_proc("--api-key", "", data_dir=data_dir)
    assert key not in second.log()
    assert http_json(second.url + "/api/shows", "POST", {}, key)[0] == 201
    assert http_json(second.url + "/api/shows", "POST", {}, API_KEY)[0] == 401


def test_demo_needs_no_key_and_its_urls_work(server_proc, tmp_path: Path) -> None:
    demo = server_proc("--demo", "--api-key", "", data_dir=tmp_path / "demo")
    deadline = time.monotonic() + 20
    while "host studio" not in demo.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(x for x in demo.log().splitlines() if "host studio" in x)
    host_token = line.split("#token=", 1)[1].strip()
    status, body = http_json(
        demo.url + "/api/shows/demo/tokens", "POST", {"role": "moderator"}, host_token
    )
    assert status == 201, body
    assert http_json(demo.url + "/api/shows/demo/guest", "POST", {})[0] == 201


def test_a_bad_api_key_option_exits_with_a_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT, free_port

    proc = subprocess.run(
        [sys.executable, "-m", "server", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "bad"), "--api-key", "short:abc"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "--api-key" in proc.stderr


async def test_the_minting_example_in_the_docs_works(client, make_show) -> None:
    """docs/protocol.md's 10-line example, run as written with this server's API key."""
    text = PROTOCOL_MD.read_text()
    example = text.split("## Tokens", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert len(example.strip().splitlines()) <= 10
    namespace: dict[str, object] = {}
    exec(example, namespace)  # noqa: S102 - our own documentation
    namespace.update(API_KEY_ID=API_ID, API_KEY_SECRET=API_SECRET)
    show_id, _ = await make_show()
    token = namespace["liveshop_token"]("shop-user-7", "Sam", show_id)  # type: ignore[operator]
    ws = await client.ws_connect(f"/ws/{show_id}?token={token}", protocols=("liveshop.json",))
    welcome = await ws.receive_json(timeout=5)
    assert welcome["user"] == {"id": "shop-user-7", "name": "Sam", "role": "viewer"}
    await ws.close()

"""Lone surrogates ("\\ud800") in any text field: 400/``bad_field`` over HTTP, ``error`` over
WebSocket — one rule (server.textrules) — and show creation never leaves half a record."""

from __future__ import annotations

import json
from typing import Any

from server.appkeys import REDIS
from server.redis import keys
from server.shows import set_live

BAD = "x\ud800y"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _post(client: Any, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    # json.dumps writes the lone surrogate as the escape "\ud800", exactly what an attacker sends.
    raw = json.dumps(body)
    assert "\\ud800" in raw
    headers = {"Content-Type": "application/json", **(_auth(token) if token else {})}
    return await client.post(path, data=raw, headers=headers)


async def _is_bad_field(resp: Any, field: str) -> None:
    body = await resp.json()
    assert resp.status == 400, body
    assert body["error"]["code"] == "bad_field" and body["error"]["details"]["field"] == field


async def test_http_text_fields_reject_lone_surrogates(client: Any, make_show: Any) -> None:
    show_id, host = await make_show()
    await _is_bad_field(await _post(client, f"/api/shows/{show_id}/guest", {"name": BAD}), "name")
    await _is_bad_field(
        await _post(client, f"/api/shows/{show_id}/tokens", {"role": "viewer", "name": BAD}, host),
        "name",
    )
    await _is_bad_field(
        await _post(
            client,
            f"/api/shows/{show_id}/lotteries",
            {"prize": BAD, "winners_count": 1, "eligibility": "entered"},
            host,
        ),
        "prize",
    )
    await _is_bad_field(
        await _post(
            client, f"/api/shows/{show_id}/products", {"title": BAD, "price": 100, "stock": 1}, host
        ),
        "title",
    )
    # Nested and key positions are covered by the same walk.
    await _is_bad_field(
        await _post(client, f"/api/shows/{show_id}/guest", {"meta": {"a": [1, BAD]}}), "meta.a[1]"
    )
    # Raw UTF-8 surrogate bytes: json.loads(bytes) decodes them with "surrogatepass".
    resp = await client.post(
        f"/api/shows/{show_id}/guest",
        data=b'{"name":"x\xed\xa0\x80"}',
        headers={"Content-Type": "application/json"},
    )
    await _is_bad_field(resp, "name")
    assert await client.app[REDIS].hlen(f"{{show:{show_id}}}:shop:products") == 0


async def test_bad_title_leaves_no_half_created_show(client: Any, post_show: Any) -> None:
    show_id = "squat-" + __import__("secrets").token_hex(4)
    await _is_bad_field(await post_show({"id": show_id, "title": BAD}), "title")
    assert not await client.app[REDIS].exists(keys.meta(show_id))
    assert (await client.get(f"/api/shows/{show_id}")).status == 404
    resp = await post_show({"id": show_id, "title": "fine"})
    assert resp.status == 201, await resp.text()
    assert (await client.post(f"/api/shows/{show_id}/guest", json={})).status == 201


async def test_a_half_created_show_from_before_is_absent_and_can_be_created(
    client: Any, post_show: Any
) -> None:
    show_id = "half-" + __import__("secrets").token_hex(4)
    await client.app[REDIS].hset(keys.meta(show_id), "id", show_id)  # the old HSETNX, no HSET
    assert (await client.get(f"/api/shows/{show_id}")).status == 404
    assert (await client.post(f"/api/shows/{show_id}/guest", json={})).status == 404
    assert show_id not in [
        s["id"] for s in (await (await client.get("/api/shows")).json())["shows"]
    ]
    resp = await post_show({"id": show_id, "title": "mine now"})
    assert resp.status == 201, await resp.text()
    assert (await (await client.get(f"/api/shows/{show_id}")).json())["show"]["title"] == "mine now"


async def test_non_string_show_id_is_400(post_show: Any) -> None:
    for bad_id in (5, ["a"], {"a": 1}, True):
        resp = await post_show({"id": bad_id})
        body = await resp.json()
        assert resp.status == 400 and body["error"]["code"] == "bad_show_id", body


async def test_set_live_on_unknown_show_creates_nothing(client: Any) -> None:
    show_id = "ghost-" + __import__("secrets").token_hex(4)
    await set_live(client.app, show_id, True)
    assert not await client.app[REDIS].exists(keys.meta(show_id))
    assert (await client.get(f"/api/shows/{show_id}")).status == 404


async def test_websocket_uses_the_same_rule(client: Any, make_show: Any, guest_token: Any) -> None:
    show_id, _ = await make_show()
    token = await guest_token(show_id)
    ws = await client.ws_connect(f"/ws/{show_id}?token={token}", protocols=("liveshop.json",))
    try:
        for message, field in [
            ({"type": "chat", "id": 1, "text": BAD}, "text"),
            ({"type": "buy", "id": 2, "sale_id": f"{show_id}.s1", "key": BAD}, "key"),
            ({"type": "lottery.enter", "id": 3, "lottery_id": BAD}, "lottery_id"),
            ({"type": "chat", "id": 4, "text": "ok", "extra": {"k": [BAD]}}, "extra.k[0]"),
        ]:
            await ws.send_str(json.dumps(message))
            while True:
                reply = json.loads((await ws.receive(timeout=5)).data)
                if reply.get("id") == message["id"]:
                    break
            assert reply["type"] == "error" and reply["code"] == "bad_field", reply
            assert reply["field"] == field
    finally:
        await ws.close()

"""Protocol edges: codecs, docs in sync with the schema, bad input, auth, frame size."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import msgpack
import pytest

from server.protocol import Command, Message, ProtocolError, Rejected, decode, register, ws_frame
from server.protocol.docs import app_registry, markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
REGISTRY = app_registry()


def test_docs_are_generated_from_the_registry():
    text = DOCS.read_text()
    assert markdown(REGISTRY) in text, "run: .venv/bin/python -m server.protocol"
    for kind in [*REGISTRY.commands, *REGISTRY.events]:
        assert f"### `{kind}" in text
    assert "### `buy`" in text and "### `poll.create`" in text  # commerce included
    events = text[text.index("## Events (inside `batch`)") :]
    assert events.index("| `uid` | str |") < events.index("### `chat.delete`")  # the event's table


def parse(message: dict, role: str = "viewer", codec: str = "json"):
    frame = json.dumps(message) if codec == "json" else msgpack.packb(message)
    return REGISTRY.parse(frame, role)


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_parse_validates_in_both_codecs(codec):
    command, body, rid = parse({"type": "like", "count": 3, "id": 9}, codec=codec)
    assert (command.type, body.count, rid) == ("like", 3, 9)
    assert parse({"type": "like"}, codec=codec)[1].count == 1
    assert parse({"type": "like", "count": None}, codec=codec)[1].count == 1  # null = absent
    assert parse({"type": "ping", "id": "x"}, codec=codec)[2] is None  # only integer ids echo
    for bad, field in (({"type": "like", "count": True}, "count"), ({"type": "like", "count": 0}, "count"),
                       ({"type": "chat"}, "text"), ({"type": "chat", "text": 5}, "text"),
                       ({"type": "mod.mute", "user_id": "u", "minutes": "5"}, "minutes")):  # fmt: skip
        with pytest.raises(Rejected) as err:
            parse({**bad, "id": 4}, role="host", codec=codec)
        assert (err.value.error.code, err.value.error.details, err.value.request_id) == (
            "bad_field", {"field": field}, 4)  # fmt: skip
    with pytest.raises(Rejected) as err:
        parse({"type": "nope", "id": 5}, codec=codec)
    assert (err.value.error.code, err.value.request_id, err.value.kind) == (
        "unknown_type",
        5,
        "other",
    )
    with pytest.raises(Rejected) as err:  # the role is checked before the fields
        parse({"type": "mod.mute", "id": 6}, role="viewer", codec=codec)
    assert err.value.error.code == "forbidden" and err.value.request_id == 6
    with pytest.raises(Rejected) as err:  # a field's own code: a malformed key is bad_key
        parse({"type": "buy", "sale_id": "s.s1", "key": "k\n"}, codec=codec)
    assert err.value.error.code == "bad_key" and err.value.error.details == {"field": "key"}


def test_decode():
    assert decode(msgpack.packb({"type": "ping"})) == {"type": "ping"}
    for raw in ("[1]", "{", b"\xc1", '{"type": 3}'):
        with pytest.raises(ProtocolError):
            decode(raw)
        with pytest.raises(Rejected) as err:
            REGISTRY.parse(raw, "viewer")
        assert err.value.error.code in ("bad_frame", "bad_type") and err.value.request_id is None


def test_ws_frame_header_lengths():
    assert ws_frame(b"x" * 10, True)[:2] == bytes((0x82, 10))
    assert ws_frame(b"x" * 300, False)[:4] == bytes((0x81, 126, 1, 44))
    assert len(ws_frame(b"x" * 70000, True)) == 70000 + 10


async def test_bad_input_gets_error_codes_then_1008(client, make_show, guest_token, connect):
    show_id, _ = await make_show()
    bystander = await connect(show_id, await guest_token(show_id))
    abuser = await connect(show_id, await guest_token(show_id))
    await abuser.ws.send_str("not json")
    await abuser.ws.send_bytes(b"\xc1\xff")
    await abuser.send({"type": "warp", "id": 1})
    await abuser.send({"type": "chat", "id": 2, "text": ["x"]})
    await abuser.send({"id": 3})
    await abuser.until(lambda c: len(c.errors) >= 5)
    assert [e["code"] for e in abuser.errors[:5]] == [
        "bad_frame",
        "bad_frame",
        "unknown_type",
        "bad_field",
        "bad_type",
    ]
    assert abuser.replies[2]["field"] == "text"
    for _ in range(30):
        if abuser.ws.closed:
            break
        await abuser.ws.send_str("{")
    await abuser.until(lambda c: c.ws.closed, 5)
    assert abuser.close_code == 1008
    assert (await bystander.request({"type": "ping"}))["type"] == "reply"
    assert not bystander.errors


async def test_oversized_frame_closes_1009(client, make_show, guest_token, connect):
    show_id, _ = await make_show()
    viewer = await connect(show_id, await guest_token(show_id))
    await viewer.ws.send_str('{"type":"chat","text":"' + "a" * 70_000 + '"}')
    await viewer.until(lambda c: c.ws.closed, 5)
    assert viewer.close_code == 1009


@pytest.mark.parametrize(
    ("token", "code", "close"),
    [("garbage", "unauthorized", 4001), ("", "unauthorized", 4001)],
)
async def test_bad_token_closes_4001(client, make_show, token, code, close):
    show_id, _ = await make_show()
    ws = await client.ws_connect(f"/ws/{show_id}?token={token}", protocols=("liveshop.json",))
    assert (await ws.receive_json())["code"] == code
    msg = await ws.receive()
    assert (
        msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and ws.close_code == close
    )


async def test_token_for_other_show_and_unknown_show(client, make_show):
    show_a, host_a = await make_show()
    show_b, _ = await make_show()
    ws = await client.ws_connect(f"/ws/{show_b}?token={host_a}", protocols=("liveshop.msgpack",))
    first = await ws.receive()
    assert msgpack.unpackb(first.data)["code"] == "forbidden"
    await ws.receive()
    assert ws.close_code == 4003
    ws = await client.ws_connect(f"/ws/nosuchshow?token={host_a}")
    await ws.receive()
    await ws.receive()
    assert ws.close_code == 4003  # the token is checked first: it is for another show


class Echo(Message, tag="test.echo"):
    """A command another part registers."""

    x: int = 0
    fail: bool = False


async def test_commands_registered_by_other_parts(client, make_show, guest_token, connect):
    from server.errors import ApiError

    async def echo(app, claims, body):
        if body.fail:
            raise ApiError(409, "sold_out", "nothing left", left=0)
        return {"user": claims.user_id, "got": body.x}

    register(client.app, "Tests", [Command(Echo, echo)])
    show_id, _ = await make_show()
    viewer = await connect(show_id, await guest_token(show_id))
    ok = await viewer.request({"type": "test.echo", "x": 7})
    assert ok == {"type": "reply", "id": ok["id"], "user": viewer.welcome["user"]["id"], "got": 7}
    err = await viewer.request({"type": "test.echo", "fail": True})
    assert err["code"] == "sold_out" and err["left"] == 0


async def test_unknown_show_closes_4004(client):
    from server import auth

    token = auth.issue("test-secret", show_id="ghost", role="viewer", name="G")
    ws = await client.ws_connect(f"/ws/ghost?token={token}")
    assert (await ws.receive_json())["code"] == "show_not_found"
    await ws.receive()
    assert ws.close_code == 4004


def test_a_type_is_registered_once():
    from server.protocol import Registry
    from server.protocol.messages import ChatEvent
    from server.realtime.moderation import ModUnpin

    registry = Registry()
    command = Command(Echo, lambda app, claims, body: None)
    registry.add("Tests", [command], [ChatEvent])
    with pytest.raises(ValueError, match="registered twice"):  # all or nothing
        registry.add("More", [Command(ModUnpin, command.handler), Command(Echo, command.handler)])
    assert "mod.unpin" not in registry.commands
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("Tests", [Command(Echo, command.handler)])
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("More", events=[ChatEvent])
    assert list(registry.commands) == ["test.echo"] and list(registry.events) == ["chat"]

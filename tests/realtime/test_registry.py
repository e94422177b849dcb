"""The registry's declarations hold on the wire: real frames match their declared Event Structs,
and every command's refusal keeps its order (role before fields) in both codecs."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from server.appkeys import COMMANDS
from server.protocol import Event, Registry


def declared(registry: Registry, kind: str) -> type[Event] | None:
    if kind in registry.events:
        return registry.events[kind]
    return next((e for e in registry.events.values() if kind in e.ALSO), None)


def check(registry: Registry, frame: dict[str, Any]) -> str:
    """``frame`` converted to its declared schema (unknown types fail the test)."""
    kind = frame["type"]
    schema = declared(registry, kind)
    assert schema is not None, f"{kind} is sent but not declared"
    if kind == "reply":  # result fields are merged in: only `id` is declared
        frame = {"id": frame["id"]}
    msgspec.convert({k: v for k, v in frame.items() if k != "type"}, schema)
    return kind


@pytest.mark.parametrize("codec", ["liveshop.json", "liveshop.msgpack"])
async def test_real_frames_match_the_declared_events(
    client: Any, make_show: Any, guest_token: Any, connect: Any, mint: Any, codec: str
) -> None:
    registry = client.app[COMMANDS]
    show_id, host_token = await make_show()
    host = await connect(show_id, host_token, codec)
    viewer_token = await guest_token(show_id, "Ann")
    viewer = await connect(show_id, viewer_token, codec)
    sent = await viewer.request({"type": "chat", "text": "hello"})
    await viewer.send({"type": "like", "count": 5})
    await host.request({"type": "mod.pin", "message_id": sent["msg_id"]})
    await host.request({"type": "mod.unpin"})
    await host.request({"type": "mod.delete", "message_id": sent["msg_id"]})
    uid = viewer.welcome["user"]["id"]
    await host.request({"type": "mod.mute", "user_id": uid, "minutes": 1})
    refused = await viewer.request({"type": "mod.ban", "user_id": uid})  # viewer: forbidden
    assert refused["code"] == "forbidden"
    await host.request({"type": "mod.ban", "user_id": uid})
    await host.until(lambda c: bool(c.of_type("user.banned")) and bool(c.of_type("likes")))
    await viewer.until(lambda c: c.ws.closed)
    assert viewer.close_code == 1008
    seen = {check(registry, host.welcome), check(registry, viewer.welcome)}
    seen |= {check(registry, e) for e in [*host.events, *viewer.events]}
    seen |= {check(registry, r) for r in [*host.replies.values(), *viewer.replies.values()]}
    assert {"welcome", "reply", "error", "chat", "likes", "chat.pin", "chat.unpin",
            "chat.delete", "user.muted", "user.banned"} <= seen  # fmt: skip


@pytest.mark.parametrize("codec", ["liveshop.json", "liveshop.msgpack"])
async def test_refusals_keep_their_order_and_id(
    client: Any, make_show: Any, guest_token: Any, connect: Any, codec: str
) -> None:
    show_id, _ = await make_show()
    viewer = await connect(show_id, await guest_token(show_id), codec)
    cases = [
        ({"type": "mod.mute"}, "forbidden", None),  # the role before the missing field
        ({"type": "like", "count": 51}, "bad_field", "count"),
        ({"type": "like", "count": None}, None, None),  # null = absent: count 1
        ({"type": "buy", "sale_id": 5, "key": "k\n"}, "bad_key", "key"),  # key first, anchored
        ({"type": "poll.create", "question": "q", "options": ["a", "b"]}, "forbidden", None),
        ({"type": "auction.bid", "auction_id": "x.a1", "amount": 0, "key": "k"}, "bad_field", "amount"),
        ({"type": "lottery.enter"}, "bad_field", "lottery_id"),
        ({"type": "group.join", "deal_id": "x" * 81}, "bad_field", "deal_id"),
    ]  # fmt: skip
    for message, code, field in cases:
        reply = await viewer.request(message)
        if code is None:
            assert reply["type"] == "reply", reply
            continue
        assert (reply["type"], reply["code"], reply.get("field")) == ("error", code, field), reply
        assert reply.get("details", {}).get("field") == field

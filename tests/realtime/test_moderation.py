"""Moderation and roles: delete, mute, ban, pin; viewers may not moderate; audit trail."""

from __future__ import annotations

import aiohttp

from server.appkeys import REDIS
from server.redis import keys


async def test_viewer_cannot_moderate(client, make_show, guest_token, connect):
    show_id, host = await make_show()
    viewer = await connect(show_id, await guest_token(show_id))
    sent = await viewer.request({"type": "chat", "text": "hi"})
    for message in (
        {"type": "mod.delete", "message_id": sent["msg_id"]},
        {"type": "mod.mute", "user_id": "x", "minutes": 5},
        {"type": "mod.ban", "user_id": "x"},
        {"type": "mod.pin", "message_id": sent["msg_id"]},
        {"type": "mod.unpin"},
    ):
        reply = await viewer.request(message)
        assert reply["type"] == "error" and reply["code"] == "forbidden", message
    assert len(await client.app[REDIS].xrange(keys.chat_stream(show_id))) == 1
    assert await client.app[REDIS].xlen(keys.audit(show_id)) == 0


async def test_delete_and_pin_broadcast(client, make_show, guest_token, connect, mint):
    show_id, host = await make_show()
    mod_token, _ = await mint(show_id, host, "moderator", "Mo")
    moderator = await connect(show_id, mod_token)
    viewer = await connect(show_id, await guest_token(show_id, "Ann"))
    a = await viewer.request({"type": "chat", "text": "keep me"})
    b = await viewer.request({"type": "chat", "text": "delete me"})
    pin = await moderator.request({"type": "mod.pin", "message_id": a["msg_id"]})
    assert pin["type"] == "reply"
    await viewer.until(lambda c: bool(c.of_type("chat.pin")))
    assert viewer.of_type("chat.pin")[0] == {
        "type": "chat.pin",
        "id": a["msg_id"],
        "uid": viewer.welcome["user"]["id"],
        "name": "Ann",
        "text": "keep me",
    }
    assert (await moderator.request({"type": "mod.delete", "message_id": b["msg_id"]}))[
        "type"
    ] == "reply"
    await viewer.until(lambda c: bool(c.of_type("chat.delete")))
    assert viewer.of_type("chat.delete")[0]["id"] == b["msg_id"]
    missing = await moderator.request({"type": "mod.delete", "message_id": b["msg_id"]})
    assert missing["code"] == "not_found"
    bad = await moderator.request({"type": "mod.pin", "message_id": "nope"})
    assert bad["code"] == "bad_field"
    # History no longer has it; a newcomer sees the pin in its welcome.
    late = await connect(show_id, host)
    assert [c["text"] for c in late.chats()] == ["keep me"]
    assert late.welcome["pinned"]["id"] == a["msg_id"]
    assert (await moderator.request({"type": "mod.unpin"}))["type"] == "reply"
    await viewer.until(lambda c: bool(c.of_type("chat.unpin")))
    audit = await client.app[REDIS].xrange(keys.audit(show_id))
    assert [(e[1]["action"], e[1]["by_name"]) for e in audit] == [
        ("pin", "Mo"),
        ("delete", "Mo"),
        ("unpin", "Mo"),
    ]


async def test_mute_and_ban(client, make_show, guest_token, connect):
    show_id, host = await make_show()
    hoster = await connect(show_id, host)
    token = await guest_token(show_id, "Troll")
    troll = await connect(show_id, token)
    bystander = await connect(show_id, await guest_token(show_id, "Nice"))
    uid = troll.welcome["user"]["id"]
    muted = await hoster.request({"type": "mod.mute", "user_id": uid, "minutes": 5})
    assert muted["until"] > 0
    refused = await troll.request({"type": "chat", "text": "spam"})
    assert refused["code"] == "muted" and refused["until"] == muted["until"]
    await hoster.until(lambda c: bool(c.of_type("user.muted")))  # staff-only event
    assert (await hoster.request({"type": "mod.unmute", "user_id": uid}))["until"] == 0
    assert (await troll.request({"type": "chat", "text": "sorry"}))["type"] == "reply"
    assert (await hoster.request({"type": "mod.mute", "user_id": host, "minutes": 1}))[
        "type"
    ] == "error"

    assert (await hoster.request({"type": "mod.ban", "user_id": uid}))["banned"] is True
    await troll.until(lambda c: c.ws.closed, 5)
    assert troll.close_code == 1008
    assert any(e["code"] == "banned" for e in troll.errors)
    rejoin = await client.ws_connect(f"/ws/{show_id}?token={token}", protocols=("liveshop.json",))
    first = await rejoin.receive_json()
    assert first["code"] == "banned"
    closing = await rejoin.receive()
    assert (
        closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        and rejoin.close_code == 1008
    )
    # Staff-only events never reach viewers; the bystander's connection is untouched.
    await bystander.pump(0.2)
    assert not bystander.of_type("user.banned") and not bystander.of_type("user.muted")
    assert (await bystander.request({"type": "ping"}))["type"] == "reply"
    actions = [e[1]["action"] for e in await client.app[REDIS].xrange(keys.audit(show_id))]
    assert actions == ["mute", "unmute", "ban"]


async def test_the_muted_user_is_told_at_once_and_on_joining(
    client, make_show, guest_token, connect
):
    """``user.muted`` goes to the staff and to the muted user's own connections (every one of
    them, with the seconds left); a user joining while muted finds it in the first batch."""
    show_id, host = await make_show()
    hoster = await connect(show_id, host)
    token = await guest_token(show_id, "Loud")
    loud, loud_phone = await connect(show_id, token), await connect(show_id, token)
    bystander = await connect(show_id, await guest_token(show_id, "Calm"))
    uid = loud.welcome["user"]["id"]
    muted = await hoster.request({"type": "mod.mute", "user_id": uid, "minutes": 3})
    for conn in (loud, loud_phone):
        await conn.until(lambda c: bool(c.of_type("user.muted")), 5)
        [told] = conn.of_type("user.muted")
        assert told["until"] == muted["until"] and 170 <= told["seconds"] <= 180
    rejoined = await connect(show_id, token)
    [again] = rejoined.of_type("user.muted")
    assert again["until"] == muted["until"] and 0 < again["seconds"] <= 180
    assert (await hoster.request({"type": "mod.unmute", "user_id": uid}))["until"] == 0
    await rejoined.until(lambda c: len(c.of_type("user.muted")) == 2, 5)
    assert rejoined.of_type("user.muted")[-1]["until"] == 0
    assert rejoined.of_type("user.muted")[-1]["seconds"] == 0
    later = await connect(show_id, token)
    assert not later.of_type("user.muted")  # unmuted: nothing in the first batch
    await bystander.pump(0.2)
    assert not bystander.of_type("user.muted")
    await hoster.until(lambda c: len(c.of_type("user.muted")) == 2, 5)  # staff: mute, unmute

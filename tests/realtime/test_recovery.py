"""Reconnect recovery: no gap, no duplicate, or an explicit history_lost."""

from __future__ import annotations

import asyncio

from server.appkeys import REDIS, SETTINGS
from server.realtime.chat import parse_id
from server.redis import keys


async def test_recover_missed_messages_exactly(client, make_show, guest_token, connect):
    show_id, host = await make_show()
    sender = await connect(show_id, host)
    viewer_token = await guest_token(show_id)
    viewer = await connect(show_id, viewer_token)
    for i in range(10):
        await sender.send({"type": "chat", "text": f"a{i}"})
    await viewer.until(lambda c: len(c.chats()) == 10)
    seen = viewer.chats()
    epoch = viewer.welcome["epoch"]
    await viewer.close()
    for i in range(10):
        await sender.send({"type": "chat", "text": f"b{i}"})
    await sender.until(lambda c: len(c.chats()) == 20)

    # Reconnect while the host keeps sending: missed, in-flight and live messages interleave.
    async def keep_sending() -> None:
        for i in range(30):
            await sender.send({"type": "chat", "text": f"c{i}"})
            await asyncio.sleep(0.002)  # sends spread across the reconnect: the interleaving tested

    sending = asyncio.create_task(keep_sending())
    back = await connect(show_id, viewer_token, since=seen[-1]["id"], epoch=epoch)
    await sending
    assert back.welcome["recovered"] is True
    await back.until(lambda c: len(c.chats()) >= 40)
    await back.pump(0.3)
    texts = [c["text"] for c in back.chats()]
    assert texts == [f"b{i}" for i in range(10)] + [f"c{i}" for i in range(30)]
    ids = [parse_id(c["id"]) for c in back.chats()]
    assert ids == sorted(set(ids))
    assert not back.of_type("history_lost")


async def test_recovery_from_latest_id_gets_nothing_again(client, make_show, connect):
    show_id, host = await make_show()
    sender = await connect(show_id, host)
    reply = await sender.request({"type": "chat", "text": "only"})
    back = await connect(show_id, host, since=reply["msg_id"], epoch=sender.welcome["epoch"])
    await back.pump(0.2)
    assert back.welcome["recovered"] is True and back.chats() == []


async def test_history_lost_when_too_old_or_epoch_changed(client, make_show, connect):
    client.app[SETTINGS].chat_history = 5
    show_id, host = await make_show()
    sender = await connect(show_id, host)
    first = await sender.request({"type": "chat", "text": "first"})
    for i in range(8):
        await sender.request({"type": "chat", "text": f"n{i}"})
    epoch = sender.welcome["epoch"]
    back = await connect(show_id, host, since=first["msg_id"], epoch=epoch)
    assert back.welcome["recovered"] is False
    lost = back.of_type("history_lost")
    assert lost and lost[0]["reason"] == "too_old" and lost[0]["since"] == first["msg_id"]
    assert [c["text"] for c in back.chats()] == [f"n{i}" for i in range(3, 8)]

    await client.app[REDIS].set(keys.chat_epoch(show_id), "reset")
    again = await connect(show_id, host, since=back.chats()[-1]["id"], epoch=epoch)
    assert again.welcome["recovered"] is False and again.welcome["epoch"] == "reset"
    assert again.of_type("history_lost")[0]["reason"] == "epoch_changed"
    malformed = await connect(show_id, host, since="garbage", epoch=epoch)
    assert malformed.welcome["recovered"] is False and malformed.of_type("history_lost")


async def test_joining_an_empty_show_then_recovering_loses_nothing(
    client, make_show, guest_token, connect
):
    """A viewer who joined before the first message holds last_id "0-0": recovery gives everything."""
    show_id, host = await make_show()
    viewer_token = await guest_token(show_id)
    early = await connect(show_id, viewer_token)
    assert early.welcome["last_id"] == "0-0"
    epoch = early.welcome["epoch"]
    await early.close()
    sender = await connect(show_id, host)
    for i in range(4):
        await sender.request({"type": "chat", "text": f"m{i}"})
    back = await connect(show_id, viewer_token, since="0-0", epoch=epoch)
    await back.until(lambda c: len(c.chats()) == 4)
    assert back.welcome["recovered"] is True and not back.of_type("history_lost")
    assert [c["text"] for c in back.chats()] == [f"m{i}" for i in range(4)]


async def test_a_retracted_oldest_message_is_not_lost_history(client, make_show, connect):
    show_id, host = await make_show()
    sender = await connect(show_id, host)
    before = await sender.request({"type": "chat", "text": "kept-before"})
    doomed = await sender.request({"type": "chat", "text": "retracted"})
    await sender.request({"type": "chat", "text": "after"})
    await sender.request({"type": "mod.delete", "message_id": before["msg_id"]})
    await sender.request({"type": "mod.delete", "message_id": doomed["msg_id"]})
    back = await connect(show_id, host, since=before["msg_id"], epoch=sender.welcome["epoch"])
    await back.until(lambda c: len(c.chats()) == 1)
    assert back.welcome["recovered"] is True and not back.of_type("history_lost")
    assert [c["text"] for c in back.chats()] == ["after"]

"""Co-host events (issue 20): `cohost` on go-live/leave/removal, the welcome's snapshot, chat roles."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from media.publish import Publisher, PublishOptions
from server.appkeys import COMMANDS

SMALL = dict(width=256, height=192, fps=15, bitrate=200_000)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_cohost_event_welcome_snapshot_and_chat(
    client: TestClient, make_show, guest_token, connect
) -> None:
    assert "cohost" in client.app[COMMANDS].events  # registered, so documented in docs/protocol.md
    show_id, host_token = await make_show()
    resp = await client.post(
        f"/api/shows/{show_id}/cohost/invite", json={"name": "Mia"}, headers=_bearer(host_token)
    )
    invite = await resp.json()
    viewer = await connect(show_id, await guest_token(show_id))
    assert viewer.welcome["show"]["cohost"] is None
    base = str(client.make_url("")).rstrip("/")
    publisher = Publisher(base, show_id, invite["token"], PublishOptions(codec="vp8", **SMALL))
    await publisher.start()
    try:
        await viewer.until(lambda c: bool(c.of_type("cohost")))
        assert viewer.of_type("cohost") == [
            {"type": "cohost", "live": True, "user_id": invite["user_id"], "name": "Mia"}
        ]
        # a late joiner learns it from the welcome
        late = await connect(show_id, await guest_token(show_id))
        assert late.welcome["show"]["cohost"]["name"] == "Mia"
        # the co-host chats under their role
        cohost_ws = await connect(show_id, invite["token"])
        assert cohost_ws.welcome["user"]["role"] == "cohost"
        await cohost_ws.request({"type": "chat", "text": "hello from the co-host"})
        await late.until(lambda c: any(m["text"] == "hello from the co-host" for m in c.chats()))
        assert [m["role"] for m in late.chats() if m["uid"] == invite["user_id"]] == ["cohost"]
        # but moderates nothing without moderator rights
        reply = await cohost_ws.request({"type": "mod.ban", "user_id": "u_x"})
        assert reply.get("code") == "forbidden", reply
    finally:
        await publisher.stop()
    await viewer.until(lambda c: len(c.of_type("cohost")) == 2)
    assert viewer.of_type("cohost")[1] == {
        "type": "cohost",
        "live": False,
        "user_id": invite["user_id"],
        "name": "Mia",
    }
    again = await connect(show_id, await guest_token(show_id))
    assert again.welcome["show"]["cohost"] is None

"""Presence (counts, peak, who is here) and likes (aggregated totals)."""

from __future__ import annotations

from server.appkeys import REDIS
from server.realtime.presence import present_users, viewer_counts
from server.redis import keys


async def test_likes_are_aggregated_into_totals(client, make_show, guest_token, connect):
    show_id, _ = await make_show()
    tapper = await connect(show_id, await guest_token(show_id), codec="liveshop.msgpack")
    watcher = await connect(show_id, await guest_token(show_id))
    for _ in range(40):
        await tapper.send({"type": "like", "count": 5})
    await watcher.until(lambda c: any(e["total"] == 200 for e in c.of_type("likes")))
    totals = [e["total"] for e in watcher.of_type("likes")]
    assert len(totals) <= 20 and totals == sorted(totals)  # aggregated: far fewer than 40
    assert await client.app[REDIS].hget(keys.counters(show_id), "likes") == "200"
    bad = await tapper.request({"type": "like", "count": 51})
    assert bad["code"] == "bad_field" and bad["field"] == "count"
    late = await connect(show_id, await guest_token(show_id))
    assert late.welcome["likes"] == 200


async def test_presence_counts_peak_and_users(client, make_show, guest_token, connect):
    """Viewers only: the host and a moderator are neither counted nor present."""
    show_id, host = await make_show()
    hoster = await connect(show_id, host)
    await connect(show_id, await mint(client, show_id, host, "moderator", "Mo"))
    viewers = [await connect(show_id, await guest_token(show_id, f"V{i}")) for i in range(3)]
    await hoster.until(lambda c: any(e["viewers"] == 3 for e in c.of_type("presence")), 5)
    assert await viewer_counts(client.app, show_id) == (3, 3)
    names = {name for _, name in await present_users(client.app, show_id)}
    assert names == {"V0", "V1", "V2"}
    await viewers[0].close()
    await viewers[1].close()
    await hoster.until(lambda c: c.of_type("presence")[-1]["viewers"] == 1, 5)
    assert hoster.of_type("presence")[-1] == {"type": "presence", "viewers": 1, "peak": 3}
    assert await viewer_counts(client.app, show_id) == (1, 3)
    assert {name for _, name in await present_users(client.app, show_id)} == {"V2"}
    late = await connect(show_id, await guest_token(show_id, "Late"))
    assert late.welcome["viewers"] == 1 and late.welcome["peak"] == 3


async def mint(client, show_id: str, host: str, role: str, name: str) -> str:
    resp = await client.post(
        f"/api/shows/{show_id}/tokens",
        json={"role": role, "name": name},
        headers={"Authorization": f"Bearer {host}"},
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["token"]

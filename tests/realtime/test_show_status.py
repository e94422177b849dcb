"""Going live and ending reach every viewer as events (no polling needed)."""

from __future__ import annotations

from server.shows import get_show, set_live


async def test_live_and_ended_are_announced(client, make_show, guest_token, connect) -> None:
    show_id, _ = await make_show()
    viewer = await connect(show_id, await guest_token(show_id))
    await set_live(client.app, show_id, True)
    await viewer.until(lambda c: bool(c.of_type("show.live")))
    assert (await get_show(client.app, show_id))["status"] == "live"
    await set_live(client.app, show_id, False)
    await viewer.until(lambda c: bool(c.of_type("show.ended")))
    assert (await get_show(client.app, show_id))["status"] == "ended"

"""WHIP/WHEP over HTTP (RFC 9725) against the real app: status codes, Location, CORS, metrics."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from media.light_viewer import LightViewer
from media.publish import Publisher, PublishOptions
from server.media_api import RELAY

from .peers import SMALL, wait_until


def _base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def _status(client: TestClient, show_id: str) -> str:
    resp = await client.get(f"/api/shows/{show_id}")
    return (await resp.json())["show"]["status"]


async def test_publish_view_and_leave(client: TestClient, make_show, guest_token) -> None:
    show_id, host_token = await make_show()
    publisher = Publisher(_base(client), show_id, host_token, PublishOptions(codec="vp8", **SMALL))
    await publisher.start()
    assert publisher.location and publisher.location.startswith(f"/whip/{show_id}/")
    assert await _status(client, show_id) == "live"
    relay = client.app[RELAY]
    session_id = publisher.location.rsplit("/", 1)[1].partition("~")[0]  # "~" names the process
    assert await wait_until(lambda: relay.sessions[session_id].connected.is_set(), 10)

    token = await guest_token(show_id)
    viewer = LightViewer()
    await viewer.join(_base(client), show_id, token)
    assert viewer.location and f"/whep/{show_id}/" in viewer.location
    assert await wait_until(lambda: viewer.counters["video"].first_keyframe_at is not None)
    assert await wait_until(lambda: viewer.counters["audio"].packets > 10)
    assert viewer.counters["video"].mime_type == "video/VP8"

    metrics = await (await client.get("/metrics")).text()
    assert "liveshop_media_forward_latency_seconds" in metrics

    await viewer.leave(token)
    assert await wait_until(lambda: all(s.kind != "whep" for s in relay.sessions.values()), 5)

    await publisher.stop()
    assert await wait_until(lambda: not relay.sessions, 5)
    assert await _status(client, show_id) == "ended"


async def test_errors_are_json_with_codes(client: TestClient, make_show, guest_token) -> None:
    show_id, host_token = await make_show()
    auth = {"Authorization": f"Bearer {host_token}", "Content-Type": "application/sdp"}

    resp = await client.post(f"/whip/{show_id}", data="not sdp", headers=auth)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_sdp"

    resp = await client.post(
        f"/whip/{show_id}", data="v=0", headers={**auth, "Content-Type": "text/plain"}
    )
    assert resp.status == 415

    resp = await client.post(
        f"/whip/{show_id}", data="v=0", headers={"Content-Type": "application/sdp"}
    )
    assert resp.status == 401

    token = await guest_token(show_id)
    resp = await client.post(
        f"/whip/{show_id}",
        data="v=0",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    )
    assert resp.status == 403

    viewer = LightViewer()
    resp = await client.post(
        f"/whep/{show_id}",
        data=await viewer.offer(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    )
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "not_live"
    await viewer.pc.close()

    resp = await client.options(f"/whip/{show_id}", headers={"Origin": "http://studio.example"})
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert "Location" in resp.headers["Access-Control-Expose-Headers"]

    first = Publisher(
        _base(client), show_id, host_token, PublishOptions(codec="h264", audio=False, **SMALL)
    )
    second = Publisher(
        _base(client), show_id, host_token, PublishOptions(codec="h264", audio=False, **SMALL)
    )
    await first.start()
    try:
        try:
            await second.start()
            raise AssertionError("second publisher accepted")
        except RuntimeError as exc:
            assert "409" in str(exc) and "already_live" in str(exc)
        resp = await client.delete(
            f"/whip/{show_id}/nope", headers={"Authorization": f"Bearer {host_token}"}
        )
        assert resp.status == 404
    finally:
        await first.stop()

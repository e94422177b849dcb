"""Co-hosts (issue 20): a second publisher stream in a show, played beside the host's.

Real aiortc publishers (host and co-host over WHIP), real aiortc viewers over WHEP that decode
both streams, the real relay and Redis behind the HTTP API.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from media import metrics
from media.light_viewer import LightViewer
from media.publish import Publisher, PublishOptions
from media.streams import COHOST, media_id
from server.appkeys import REDIS
from server.media_api import RELAY
from server.redis import keys

from .peers import SMALL, TestViewer, ended_by_peer, wait_until

SDP = {"Content-Type": "application/sdp"}
COHOST_SIZE = dict(width=256, height=192, fps=30, bitrate=300_000)  # tells the streams apart


def _base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _invite(client: TestClient, show_id: str, host_token: str, **body: Any) -> dict[str, Any]:
    resp = await client.post(
        f"/api/shows/{show_id}/cohost/invite", json=body, headers=_bearer(host_token)
    )
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def _show(client: TestClient, show_id: str) -> dict[str, Any]:
    return dict((await (await client.get(f"/api/shows/{show_id}")).json())["show"])


async def _watch(client: TestClient, show_id: str, token: str, stream: str = "") -> TestViewer:
    """A decoding viewer of one stream (``/whep/{show}`` or ``/whep/{show}/cohost``)."""
    viewer = TestViewer()
    path = f"/whep/{show_id}" + (f"/{stream}" if stream else "")
    resp = await client.post(path, data=await viewer.offer(), headers={**SDP, **_bearer(token)})
    assert resp.status == 201, await resp.text()
    viewer.location = resp.headers["Location"]  # type: ignore[attr-defined]
    await viewer.answer(await resp.text())
    return viewer


async def _live(client: TestClient, show_id: str, token: str, size: dict) -> Publisher:
    publisher = Publisher(_base(client), show_id, token, PublishOptions(codec="vp8", **size))
    await publisher.start()
    return publisher


async def test_viewer_decodes_host_and_cohost(client: TestClient, make_show, guest_token) -> None:
    show_id, host_token = await make_show()
    invite = await _invite(client, show_id, host_token, name="Brand rep")
    assert invite["role"] == "cohost" and invite["studio_path"].startswith(f"/host/{show_id}#")
    host = await _live(client, show_id, host_token, SMALL)
    # OBS knows one URL: POST /whip/{show} with the co-host's token publishes the cohost stream
    cohost = await _live(client, show_id, invite["token"], COHOST_SIZE)
    viewers: list[TestViewer] = []
    try:
        assert cohost.location and cohost.location.startswith(f"/whip/{show_id}/cohost/")
        show = await _show(client, show_id)
        assert show["status"] == "live"
        assert show["cohost"]["name"] == "Brand rep"
        assert show["cohost"]["user_id"] == invite["user_id"]
        assert "session" not in show["cohost"]  # the session location is the server's own

        token = await guest_token(show_id)
        viewers = [
            await _watch(client, show_id, token),
            await _watch(client, show_id, token, "cohost"),
        ]
        main_view, cohost_view = viewers
        assert cohost_view.location.startswith(f"/whep/{show_id}/cohost/")  # type: ignore[attr-defined]
        await main_view.wait_frames(10)
        await cohost_view.wait_frames(10)
        assert set(main_view.frames[-5:]) == {(320, 240)}
        assert set(cohost_view.frames[-5:]) == {(256, 192)}
        assert await wait_until(lambda: all(v.audio_frames > 10 for v in viewers))  # both heard

        # the viewer ends its own co-host playback with DELETE on the Location
        resp = await client.delete(cohost_view.location, headers=_bearer(token))  # type: ignore[attr-defined]
        assert resp.status == 200
        router = client.app[RELAY].routers[media_id(show_id, COHOST)]
        assert await wait_until(lambda: not router.viewers, 5)
    finally:
        for viewer in viewers:
            await viewer.close()
        await cohost.stop()
        await host.stop()


async def test_cohost_leaves_and_rejoins_while_the_show_goes_on(
    client: TestClient, make_show, guest_token
) -> None:
    show_id, host_token = await make_show()
    invite = await _invite(client, show_id, host_token)
    host = await _live(client, show_id, host_token, SMALL)
    token = await guest_token(show_id)
    main_view = await _watch(client, show_id, token)
    cohost = await _live(client, show_id, invite["token"], COHOST_SIZE)
    try:
        await cohost.stop()  # DELETE of the co-host's own WHIP session
        assert await wait_until(lambda: media_id(show_id, COHOST) not in client.app[RELAY].routers)
        show = await _show(client, show_id)
        assert show["status"] == "live" and show["cohost"] is None
        resp = await client.post(
            f"/whep/{show_id}/cohost",
            data=await TestViewer().offer(),
            headers={**SDP, **_bearer(token)},
        )
        assert resp.status == 409 and (await resp.json())["error"]["code"] == "not_live"
        before = len(main_view.frames)
        await main_view.wait_frames(before + 10)  # the host's stream never stopped
        assert len(main_view.frames) >= before + 10

        cohost = await _live(client, show_id, invite["token"], COHOST_SIZE)  # rejoin, same token
        assert (await _show(client, show_id))["cohost"]["user_id"] == invite["user_id"]
        again = await _watch(client, show_id, token, "cohost")
        try:
            await again.wait_frames(5)
            assert len(again.frames) >= 5 and again.frames[-1] == (256, 192)
        finally:
            await again.close()
    finally:
        await main_view.close()
        await cohost.stop()
        await host.stop()


async def test_host_removes_the_cohost(client: TestClient, make_show, guest_token) -> None:
    show_id, host_token = await make_show()
    invite = await _invite(client, show_id, host_token, name="Guest seller")
    host = await _live(client, show_id, host_token, SMALL)
    cohost = await _live(client, show_id, invite["token"], COHOST_SIZE)
    token = await guest_token(show_id)
    viewer = await _watch(client, show_id, token, "cohost")
    try:
        await viewer.wait_frames(3)
        resp = await client.post(f"/api/shows/{show_id}/cohost/remove", headers=_bearer(host_token))
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["user_id"] == invite["user_id"] and body["was_live"] is True
        relay = client.app[RELAY]
        assert await wait_until(lambda: media_id(show_id, COHOST) not in relay.routers, 5)
        assert await wait_until(lambda: ended_by_peer(viewer.pc), 10)
        show = await _show(client, show_id)
        assert show["status"] == "live" and show["cohost"] is None
        # the token is revoked: the removed co-host cannot come back with it
        resp = await client.post(
            f"/whip/{show_id}", data="v=0", headers={**SDP, **_bearer(invite["token"])}
        )
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "token_revoked"
        audit = await client.app[REDIS].xrange(keys.audit(show_id))
        actions = [(e[1]["action"], e[1]["target"]) for e in audit]
        assert ("cohost.invite", invite["user_id"]) in actions
        assert ("cohost.remove", invite["user_id"]) in actions
        assert actions.index(("cohost.invite", invite["user_id"])) < actions.index(
            ("cohost.remove", invite["user_id"])
        )
        # nothing left to remove
        resp = await client.post(f"/api/shows/{show_id}/cohost/remove", headers=_bearer(host_token))
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "no_cohost"
    finally:
        await viewer.close()
        await cohost.stop()
        await host.stop()


async def test_refusals_have_codes(client: TestClient, make_show, guest_token) -> None:
    show_id, host_token = await make_show()
    guest = await guest_token(show_id)
    first = await _invite(client, show_id, host_token, name="First")
    second = await _invite(client, show_id, host_token, name="Second")
    offer = TestViewer()
    sdp = await offer.offer()
    await offer.close()

    async def whip(path: str, token: str) -> tuple[int, str]:
        resp = await client.post(path, data=sdp, headers={**SDP, **_bearer(token)})
        return resp.status, (await resp.json())["error"]["code"]

    # a viewer token (or the host's, or another show's co-host) cannot publish the cohost stream
    assert await whip(f"/whip/{show_id}/cohost", guest) == (403, "forbidden")
    assert await whip(f"/whip/{show_id}/cohost", host_token) == (403, "forbidden")
    other_id, other_host = await make_show()
    other = await _invite(client, other_id, other_host)
    assert await whip(f"/whip/{show_id}/cohost", other["token"]) == (403, "forbidden")
    # only the host invites and removes
    for token in (guest, first["token"]):
        resp = await client.post(
            f"/api/shows/{show_id}/cohost/invite", json={}, headers=_bearer(token)
        )
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
        resp = await client.post(f"/api/shows/{show_id}/cohost/remove", headers=_bearer(token))
        assert resp.status == 403
    resp = await client.post(
        f"/api/shows/{show_id}/cohost/invite", json={"name": "x" * 41}, headers=_bearer(host_token)
    )
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_field"
    # a co-host runs no commerce action without moderator rights; with them it does
    product = {"title": "Mug", "price": 1200, "stock": 5, "currency": "USD"}
    resp = await client.post(
        f"/api/shows/{show_id}/products", json=product, headers=_bearer(first["token"])
    )
    assert resp.status == 403, await resp.text()
    moderating = await _invite(client, show_id, host_token, moderator=True)
    assert moderating["moderator"] is True
    resp = await client.post(
        f"/api/shows/{show_id}/products", json=product, headers=_bearer(moderating["token"])
    )
    assert resp.status == 201, await resp.text()

    host = await _live(client, show_id, host_token, SMALL)
    cohost = await _live(client, show_id, first["token"], COHOST_SIZE)
    try:
        # a second co-host while one is live: 409, and the first one is untouched
        assert await whip(f"/whip/{show_id}", second["token"]) == (409, "cohost_live")
        assert await whip(f"/whip/{show_id}/cohost", second["token"]) == (409, "cohost_live")
        assert (await _show(client, show_id))["cohost"]["name"] == "First"
        # the host's own WHIP session is not the co-host's to end
        resp = await client.delete(host.location, headers=_bearer(first["token"]))  # type: ignore[arg-type]
        assert resp.status == 403
        assert (await _show(client, show_id))["status"] == "live"
    finally:
        await cohost.stop()
        await host.stop()


async def test_late_joiners_start_from_the_cached_keyframe_on_both_streams(
    client: TestClient, make_show, guest_token
) -> None:
    """Publishers with a 10 s GOP: a keyframe seen within seconds of joining is the cache's."""
    show_id, host_token = await make_show()
    invite = await _invite(client, show_id, host_token)
    slow_gop = dict(codec="vp8", keyint_s=10.0)
    host = Publisher(_base(client), show_id, host_token, PublishOptions(**SMALL, **slow_gop))
    cohost = Publisher(
        _base(client), show_id, invite["token"], PublishOptions(**COHOST_SIZE, **slow_gop)
    )
    await host.start()
    await cohost.start()
    relay = client.app[RELAY]
    media = {"": show_id, "cohost": media_id(show_id, COHOST)}
    viewers: dict[str, LightViewer] = {}
    try:
        for key in media.values():  # both GOP caches hold a keyframe
            assert await wait_until(
                lambda key=key: (
                    key in relay.routers
                    and (gop := relay.routers[key].producers["video"].gop) is not None
                    and gop.snapshot()
                )
            )
        joins = {s: metrics.GOP_JOINS.labels(key)._value.get() for s, key in media.items()}
        token = await guest_token(show_id)
        for stream in media:
            viewer = viewers[stream] = LightViewer()
            await viewer.join(_base(client), f"{show_id}/{stream}" if stream else show_id, token)
        for stream, key in media.items():
            counters = viewers[stream].counters["video"]
            assert await wait_until(lambda c=counters: c.first_keyframe_at is not None, 5)
            assert metrics.GOP_JOINS.labels(key)._value.get() == joins[stream] + 1
            # the keyframe came from the cache: the publisher was never asked for a new one
            assert relay.routers[key].producers["video"].gop.keyframes == 1
    finally:
        for viewer in viewers.values():
            await viewer.leave(token)
        await cohost.stop()
        await host.stop()

"""WHIP/WHEP HTTP details third-party clients rely on (RFC 9725): CORS on errors, Bearer
challenges, the preflight, trickle ICE over PATCH with ETag/If-Match."""

from __future__ import annotations

import re

import aiohttp
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from media.publish import Publisher, PublishOptions
from server.media_api import RELAY

from .peers import SMALL, TestViewer, wait_until

SDP = {"Content-Type": "application/sdp"}
FRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}


def _base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


def _cors_readable(resp: ClientResponse) -> None:
    assert resp.headers.get("Access-Control-Allow-Origin") == "*", (resp.status, resp.headers)
    exposed = resp.headers.get("Access-Control-Expose-Headers", "")
    for name in ("Location", "Link", "ETag", "WWW-Authenticate"):
        assert name in exposed, (resp.status, exposed)


async def test_every_error_is_cors_readable(client: TestClient, make_show, guest_token) -> None:
    show_id, host_token = await make_show()
    host = {"Authorization": f"Bearer {host_token}"}
    guest = {"Authorization": f"Bearer {await guest_token(show_id)}"}
    viewer = TestViewer()
    try:
        offer = await viewer.offer()
    finally:
        await viewer.close()
    cases = [
        (client.post(f"/whip/{show_id}", data="not sdp", headers={**host, **SDP}), 400, "bad_sdp"),
        (client.post(f"/whip/{show_id}", data="v=0", headers=SDP), 401, "unauthorized"),
        (client.post(f"/whip/{show_id}", data="v=0", headers={**guest, **SDP}), 403, "forbidden"),
        (client.delete(f"/whep/{show_id}/nope", headers=guest), 404, "no_session"),
        (client.get(f"/whip/{show_id}"), 405, "method_not_allowed"),
        (client.post(f"/whep/{show_id}", data=offer, headers={**guest, **SDP}), 409, "not_live"),
        (client.post(f"/whip/{show_id}", data="v=0", headers=host), 415, "unsupported_media_type"),
        # the rest of the API, not only media
        (client.get("/api/shows/zzzzzzzz"), 404, None),
        (client.post(f"/api/shows/{show_id}/recordings"), 401, "unauthorized"),
        (client.get("/no/such/route"), 404, "not_found"),
    ]
    for request, status, code in cases:
        resp = await request
        assert resp.status == status, (status, await resp.text())
        if code is not None:
            assert (await resp.json())["error"]["code"] == code
        _cors_readable(resp)


async def test_401_carries_a_bearer_challenge(client: TestClient, make_show) -> None:
    show_id, host_token = await make_show()
    resp = await client.post(f"/whip/{show_id}", data="v=0", headers=SDP)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="liveshop"'  # no token: no error code

    resp = await client.post(
        f"/whip/{show_id}", data="v=0", headers={**SDP, "Authorization": "Bearer junk.token"}
    )
    assert resp.status == 401
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="liveshop", error="invalid_token"'), challenge

    resp = await client.get(f"/api/shows/{show_id}/recordings?token=junk")
    assert resp.status == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_preflight_allows_what_the_session_url_supports(client: TestClient) -> None:
    for path in ("/whip/abcdefgh", "/whep/abcdefgh/some-session"):
        resp = await client.options(
            path,
            headers={
                "Origin": "https://other.example",
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "if-match, content-type",
            },
        )
        assert resp.status == 204
        methods = {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}
        assert {"POST", "PATCH", "DELETE", "OPTIONS"} <= methods
        assert "If-Match" in resp.headers["Access-Control-Allow-Headers"]
        for name in ("ETag", "Location", "Link"):
            assert name in resp.headers["Access-Control-Expose-Headers"]
    assert resp.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"


def _strip_candidates(sdp: str) -> tuple[str, list[str]]:
    kept, candidates = [], []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            candidates.append(line)
        elif line != "a=end-of-candidates":
            kept.append(line)
    return "\r\n".join(kept) + "\r\n", candidates


async def test_trickle_ice_over_patch(client: TestClient, make_show, guest_token) -> None:
    """Neither side's SDP carries candidates; the viewer's come in a PATCH, and media flows.

    (The answer's candidates are withheld from the viewer too, so the only way the pair can
    form is the server checking the PATCHed candidates.)"""
    show_id, host_token = await make_show()
    publisher = Publisher(_base(client), show_id, host_token, PublishOptions(codec="vp8", **SMALL))
    await publisher.start()
    viewer = TestViewer()
    try:
        auth = {"Authorization": f"Bearer {await guest_token(show_id)}"}
        offer, candidates = _strip_candidates(await viewer.offer())
        assert candidates
        resp = await client.post(f"/whep/{show_id}", data=offer, headers={**auth, **SDP})
        assert resp.status == 201, await resp.text()
        etag = resp.headers["ETag"]
        assert resp.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
        location = resp.headers["Location"]
        answer, server_candidates = _strip_candidates(await resp.text())
        assert server_candidates
        await viewer.answer(answer)
        session = client.app[RELAY].sessions[location.rsplit("/", 1)[1].partition("~")[0]]
        assert not session.connected.is_set()

        ufrag = re.search(r"a=ice-ufrag:(\S+)", offer).group(1)  # type: ignore[union-attr]
        pwd = re.search(r"a=ice-pwd:(\S+)", offer).group(1)  # type: ignore[union-attr]
        mid = re.search(r"a=mid:(\S+)", offer).group(1)  # type: ignore[union-attr]
        frag = f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:{mid}\r\n"

        # refused, with a code, and nothing applied
        resp = await client.patch(
            location, data=frag, headers={**auth, "If-Match": '"stale"', **FRAG}
        )
        assert resp.status == 412 and (await resp.json())["error"]["code"] == "etag_mismatch"
        _cors_readable(resp)
        resp = await client.patch(location, data=frag, headers={**auth, "If-Match": etag, **SDP})
        assert resp.status == 415
        restart = frag.replace(ufrag, "newufrag1234")
        resp = await client.patch(
            location, data=restart, headers={**auth, "If-Match": etag, **FRAG}
        )
        assert (
            resp.status == 422 and (await resp.json())["error"]["code"] == "ice_restart_unsupported"
        )
        resp = await client.patch(
            location, data=frag + "a=candidate:junk\r\n", headers={**auth, "If-Match": etag, **FRAG}
        )
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_sdpfrag"
        resp = await client.patch(f"/whep/{show_id}/nope", data=frag, headers={**auth, **FRAG})
        assert resp.status == 404
        ice = session.pc.getTransceivers()[0].receiver.transport.transport
        assert not ice.getRemoteCandidates()

        body = frag + "".join(f"{c}\r\n" for c in candidates) + "a=end-of-candidates\r\n"
        resp = await client.patch(location, data=body, headers={**auth, "If-Match": etag, **FRAG})
        assert resp.status == 204, await resp.text()
        assert resp.headers["ETag"] == etag
        assert len([c for c in ice.getRemoteCandidates() if c.type == "host"]) == len(candidates)
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert await wait_until(session.connected.is_set, 15)
        await viewer.wait_frames(10, within=15)
        assert len(viewer.frames) >= 10
    finally:
        await viewer.close()
        await publisher.stop()


async def test_trickle_reaches_a_worker_viewer(server_proc) -> None:
    """With ``--media-workers 1`` the PATCH is relayed to the worker that owns the viewer."""
    from .test_workers import SMALL as WORKER_SMALL
    from .test_workers import _guest, _show

    server = server_proc("--media-workers", "1")
    base = server.url
    show_id, host_token = _show(base)
    publisher = Publisher(base, show_id, host_token, WORKER_SMALL)
    viewer = TestViewer()
    try:
        await publisher.start()
        auth = {"Authorization": f"Bearer {_guest(base, show_id)}"}
        offer, candidates = _strip_candidates(await viewer.offer())
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/whep/{show_id}", data=offer, headers={**auth, **SDP}
            ) as resp:
                assert resp.status == 201, await resp.text()
                location, etag = resp.headers["Location"], resp.headers["ETag"]
                answer, _ = _strip_candidates(await resp.text())
            assert location.rsplit("/", 1)[1].startswith("w0.")
            await viewer.answer(answer)
            ufrag = re.search(r"a=ice-ufrag:(\S+)", offer).group(1)  # type: ignore[union-attr]
            body = f"a=ice-ufrag:{ufrag}\r\n" + "".join(f"{c}\r\n" for c in candidates)
            async with http.patch(
                base + location, data=body, headers={**auth, "If-Match": '"stale"', **FRAG}
            ) as resp:
                assert resp.status == 412, await resp.text()
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
            async with http.patch(
                base + location, data=body, headers={**auth, "If-Match": etag, **FRAG}
            ) as resp:
                assert resp.status == 204, await resp.text()
        await viewer.wait_frames(10, within=20)
        assert len(viewer.frames) >= 10
    finally:
        await viewer.close()
        await publisher.stop()

"""LL-HLS: the packaged CMAF decodes with continuous timestamps, playlists conform, reload blocks.

A real synthetic publisher (H.264 or VP8 over WHIP with aiortc) into the in-process app; every
file is fetched over HTTP the way a player (or a CDN) would.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import time

import av
import pytest
from aiohttp.test_utils import TestClient

from media.hls import HlsConfig, fmp4
from media.hls.playlist import media_playlist
from media.publish import Publisher, PublishOptions
from media.relay import Relay, RelayConfig
from server.app import create_app
from server.media_api import RELAY
from tests.conftest import ROOT, free_port

from .peers import SMALL, TestPublisher, wait_until

ATTR_RE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attributes(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in ATTR_RE.findall(line.split(":", 1)[1])}


class Playlist:
    """The parts of a media playlist the tests check (RFC 8216bis §4.4)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines()
        self.tags = [line.split(":", 1)[0] for line in self.lines if line.startswith("#")]
        self.segments: list[tuple[int, float, str]] = []  # (msn, EXTINF, uri)
        self.parts: list[dict[str, str]] = []
        self.media_sequence = int(self.value("#EXT-X-MEDIA-SEQUENCE"))
        msn = self.media_sequence
        duration = 0.0
        for line in self.lines:
            if line.startswith("#EXTINF:"):
                duration = float(line[8:].split(",")[0])
            elif line.startswith("#EXT-X-PART:"):
                self.parts.append(dict(attributes(line), MSN=str(msn)))
            elif line and not line.startswith("#"):
                self.segments.append((msn, duration, line))
                msn += 1
        self.open_msn = msn  # the segment the listed-but-unfinished parts belong to

    def value(self, tag: str) -> str:
        for line in self.lines:
            if line.startswith(tag + ":"):
                return line.split(":", 1)[1]
        raise AssertionError(f"{tag} missing from\n{self.text}")


async def _start(client: TestClient, make_show, guest_token, codec: str = "h264"):
    show_id, host_token = await make_show()
    publisher = Publisher(
        str(client.make_url("")).rstrip("/"),
        show_id,
        host_token,
        PublishOptions(codec=codec, keyint_s=10.0, **SMALL),  # keyframes come from our PLIs
    )
    await publisher.start()
    return show_id, publisher, await guest_token(show_id)


async def _media_uri(client: TestClient, show_id: str, token: str) -> str:
    for _ in range(200):  # until the packager has its first keyframe
        resp = await client.get(f"/hls/{show_id}/index.m3u8", params={"token": token})
        if resp.status == 200:
            break
        assert resp.status == 409, await resp.text()
        await asyncio.sleep(0.05)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "private, no-store"
    text = await resp.text()
    assert text.startswith("#EXTM3U\n")
    stream_inf = next(line for line in text.splitlines() if line.startswith("#EXT-X-STREAM-INF"))
    attrs = attributes(stream_inf)
    assert attrs["CODECS"].startswith("avc1.") and attrs["CODECS"].endswith(",opus")
    assert attrs["RESOLUTION"] == "320x240" and int(attrs["BANDWIDTH"]) > 0
    return f"/hls/{show_id}/" + text.splitlines()[-1]


async def _playlist(client: TestClient, uri: str, **params: int) -> Playlist:
    resp = await client.get(uri, params={k: str(v) for k, v in params.items()})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/vnd.apple.mpegurl"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    return Playlist(await resp.text())


async def _until_segments(client: TestClient, uri: str, count: int) -> Playlist:
    playlist = await _playlist(client, uri)
    while len(playlist.segments) < count:  # blocking reload: one request per finished segment
        playlist = await _playlist(client, uri, _HLS_msn=playlist.open_msn)
    return playlist


def _base(uri: str) -> str:
    return uri.rsplit("/", 1)[0] + "/"


async def test_segments_decode_with_continuous_timestamps(
    client: TestClient, make_show, guest_token
) -> None:
    show_id, publisher, token = await _start(client, make_show, guest_token)
    try:
        uri = await _media_uri(client, show_id, token)
        playlist = await _until_segments(client, uri, 4)
        base = _base(uri)
        init_uri = playlist.value("#EXT-X-MAP").split('"')[1]
        init = await (await client.get(base + init_uri)).read()
        bodies = []
        for _msn, _duration, name in playlist.segments:
            resp = await client.get(base + name)
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            bodies.append(await resp.read())
    finally:
        await publisher.stop()

    info = fmp4.parse_init(init)
    assert sorted(info.handler.values()) == ["soun", "vide"]
    video_id = next(t for t, h in info.handler.items() if h == "vide")
    # tfdt of each segment's first fragment == previous segment's start + its duration
    expected: dict[int, int] = {}
    for body in bodies:
        first = True
        for kind, start, end in fmp4.iter_boxes(body):
            if kind != b"moof":
                continue
            for run in fmp4.parse_moof(body, start, end, info):
                if run.track_id in expected:
                    assert run.base_time == expected[run.track_id], (run, expected)
                if first and run.track_id == video_id:
                    assert run.first_sync, "every segment starts with a keyframe"
                expected[run.track_id] = run.base_time + run.duration
            first = False
    for (_msn, extinf, _name), body in zip(playlist.segments, bodies, strict=True):
        video_ticks = sum(
            run.duration
            for kind, start, end in fmp4.iter_boxes(body)
            if kind == b"moof"
            for run in fmp4.parse_moof(body, start, end, info)
            if run.track_id == video_id
        )
        assert abs(video_ticks / info.timescale[video_id] - extinf) < 0.001

    # and the whole thing is an mp4 PyAV demuxes and decodes from the first frame
    with av.open(io.BytesIO(init + b"".join(bodies))) as container:
        video = container.streams.video[0]
        assert container.streams.audio[0].codec_context.name == "opus"
        frames = list(container.decode(video))
    assert (frames[0].width, frames[0].height) == (320, 240)
    pts = [frame.pts for frame in frames]
    assert pts == sorted(pts)
    step = 90000 // 30
    assert max(b - a for a, b in zip(pts, pts[1:], strict=False)) <= 3 * step  # no holes
    total = sum(d for _m, d, _n in playlist.segments)
    assert abs((pts[-1] - pts[0] + step) / 90000 - total) < 0.2


async def test_playlist_conformance(client: TestClient, make_show, guest_token) -> None:
    show_id, publisher, token = await _start(client, make_show, guest_token)
    try:
        uri = await _media_uri(client, show_id, token)
        playlist = await _until_segments(client, uri, 3)
        base = _base(uri)
        assert playlist.lines[0] == "#EXTM3U"
        target = int(playlist.value("#EXT-X-TARGETDURATION"))
        part_target = float(attributes("X:" + playlist.value("#EXT-X-PART-INF"))["PART-TARGET"])
        control = attributes("X:" + playlist.value("#EXT-X-SERVER-CONTROL"))
        assert control["CAN-BLOCK-RELOAD"] == "YES"
        assert float(control["PART-HOLD-BACK"]) >= 2 * part_target  # §4.4.3.8
        assert int(playlist.value("#EXT-X-VERSION")) >= 6  # EXT-X-MAP with fMP4
        assert playlist.tags.index("#EXT-X-MAP") < playlist.tags.index("#EXTINF")
        assert playlist.tags.count("#EXT-X-PROGRAM-DATE-TIME") == len(playlist.segments) + 1
        assert playlist.tags[-1] == "#EXT-X-PRELOAD-HINT"
        for _msn, duration, _name in playlist.segments:
            assert round(duration) <= target
        for part in playlist.parts:
            assert float(part["DURATION"]) <= part_target
        # every listed segment is complete: fetchable now, and exactly its listed parts
        by_msn: dict[int, list[dict[str, str]]] = {}
        for part in playlist.parts:
            by_msn.setdefault(int(part["MSN"]), []).append(part)
        for msn, duration, name in playlist.segments:
            resp = await client.get(base + name)
            assert resp.status == 200, name
            body = await resp.read()
            parts = by_msn.get(msn)
            if parts:
                assert parts[0].get("INDEPENDENT") == "YES"
                joined = b""
                for part in parts:
                    joined += await (await client.get(base + part["URI"])).read()
                assert joined == body
                assert abs(sum(float(p["DURATION"]) for p in parts) - duration) < 0.01
        # the open segment's parts are listed without EXTINF and are never served as a segment
        resp = await client.get(f"{base}{playlist.open_msn}.m4s")
        assert resp.status == 404
        hint = attributes(playlist.lines[-1])
        assert hint["TYPE"] == "PART" and hint["URI"].startswith("p")
    finally:
        await publisher.stop()


async def test_blocking_reload_returns_when_the_part_exists(
    client: TestClient, make_show, guest_token
) -> None:
    show_id, publisher, token = await _start(client, make_show, guest_token)
    try:
        uri = await _media_uri(client, show_id, token)
        playlist = await _playlist(client, uri)
        packager = client.app[RELAY].routers[show_id].hls
        assert packager is not None
        last = playlist.parts[-1]
        msn, index = int(last["MSN"]), len([p for p in playlist.parts if p["MSN"] == last["MSN"]])
        wanted = packager.next_part
        request = asyncio.ensure_future(
            client.get(uri, params={"_HLS_msn": str(msn), "_HLS_part": str(index)})
        )
        hinted = asyncio.ensure_future(client.get(_base(uri) + f"p{wanted}.m4s"))
        await asyncio.sleep(0)
        assert not request.done() and wanted not in packager.parts
        started = time.monotonic()
        assert await wait_until(lambda: wanted in packager.parts)
        resp = await request
        assert resp.status == 200
        assert time.monotonic() - started < packager.config.block_timeout_s
        assert f'URI="p{wanted}.m4s"' in await resp.text()
        assert resp.headers["Cache-Control"].startswith("public, max-age=")
        part = await hinted
        assert part.status == 200 and await part.read() == packager.parts[wanted].data

        # bad requests get a code
        for params, code in (
            ({"_HLS_msn": str(packager.last_msn + 3)}, "bad_hls_query"),
            ({"_HLS_part": "1"}, "bad_hls_query"),
            ({"_HLS_msn": "-1"}, "bad_hls_query"),
        ):
            resp = await client.get(uri, params=params)
            assert resp.status == 400 and (await resp.json())["error"]["code"] == code
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
        resp = await client.get(f"/hls/{show_id}/wrong-key/live.m3u8")
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "no_stream"
        resp = await client.get(_base(uri) + "..%2Fsecret.m4s")
        assert resp.status == 404
        resp = await client.get(_base(uri) + f"p{packager.next_part + 5}.m4s")
        assert resp.status == 404
        resp = await client.get(f"/hls/{show_id}/index.m3u8")
        assert resp.status == 401
        status = await (await client.get(f"/hls/{show_id}/status", params={"token": token})).json()
        assert status["hls"]["available"] is True and status["hls"]["expected_latency_s"] > 0
        # a part that does not come in time: 503 with a code, not a hung request
        packager.config = HlsConfig(block_timeout_s=0.3)
        resp = await client.get(uri, params={"_HLS_msn": str(packager.last_msn + 2)})
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "hls_timeout"
    finally:
        await publisher.stop()
    # the publisher left: HLS ends with it
    assert await wait_until(lambda: show_id not in client.app[RELAY].routers)
    resp = await client.get(uri)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "not_live"


async def test_vp8_show_says_hls_is_unavailable(client: TestClient, make_show, guest_token) -> None:
    show_id, publisher, token = await _start(client, make_show, guest_token, codec="vp8")
    try:
        resp = await client.get(f"/hls/{show_id}/index.m3u8", params={"token": token})
        assert resp.status == 409
        error = (await resp.json())["error"]
        assert error["code"] == "hls_unavailable" and "H.264" in error["message"]
        status = await (await client.get(f"/hls/{show_id}/status", params={"token": token})).json()
        assert status["hls"]["available"] is False
        assert status["hls"]["code"] == "hls_unavailable"
    finally:
        await publisher.stop()
    resp = await client.get("/hls/nobody/index.m3u8", params={"token": token})
    assert resp.status in (401, 403)  # a token of another show


@pytest.fixture
async def small_window_relay():
    config = HlsConfig(segment_s=1.0, part_s=0.25, window_segments=2, parts_listed_segments=1)
    relay = Relay(RelayConfig(connect_timeout_s=10.0, hls=config))
    yield relay
    await asyncio.wait_for(relay.close(), 30)


async def test_window_is_bounded_and_replacement_continues(small_window_relay: Relay) -> None:
    relay = small_window_relay
    first = TestPublisher(PublishOptions(codec="h264", keyint_s=10.0, **SMALL))
    await first.publish(relay, "win")
    packager = relay.routers["win"].hls
    assert packager is not None
    assert await wait_until(lambda: packager.last_msn >= 5, 30)
    assert len(packager.segments) <= 3 and len(packager.inits) == 1
    assert len(packager.parts) <= 2 * 8  # parts kept for the listed segments only
    msn_before = packager.last_msn

    second = TestPublisher(PublishOptions(codec="h264", keyint_s=10.0, **SMALL))
    await second.publish(relay, "win", replace=True)
    await first.close()
    assert relay.routers["win"].hls is packager  # same playlist, same sequence numbers
    assert await wait_until(lambda: packager.segments[-1].init == 1, 20)
    new = packager.segments[-1]
    assert new.msn > msn_before and new.discontinuity

    text = media_playlist(packager)
    assert "#EXT-X-DISCONTINUITY\n" in text and 'URI="init1.mp4"' in text
    assert await wait_until(lambda: len(packager.inits) == 1 and 1 in packager.inits, 30)
    assert int(Playlist(media_playlist(packager)).value("#EXT-X-DISCONTINUITY-SEQUENCE")) == 1
    await second.close()


def test_bad_hls_lengths_stop_the_server_with_a_message(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--port", str(free_port()), "--data-dir",
         str(tmp_path), "--hls-segment-s", "1", "--hls-part-s", "0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--hls-part-s must be" in proc.stderr


async def test_an_edge_fed_by_a_pipe_packages_the_show_itself() -> None:
    origin, edge = Relay(RelayConfig()), Relay(RelayConfig())
    pub = TestPublisher(PublishOptions(codec="h264", keyint_s=10.0, **SMALL))
    try:
        await pub.publish(origin, "piped-hls")
        assert await wait_until(lambda: origin.routers["piped-hls"].hls.segments, 15)
        pipe_edge, port = await edge.accept_pipe("piped-hls", key=origin.pipe_key("piped-hls"))
        await origin.pipe_to("piped-hls", ("127.0.0.1", port))
        assert await wait_until(lambda: pipe_edge.ready.is_set(), 5)
        packager = edge.routers["piped-hls"].hls
        assert packager is not None and packager is not origin.routers["piped-hls"].hls
        assert await wait_until(lambda: any(s.complete for s in packager.segments), 15)
        assert packager.codecs.startswith("avc1.") and packager.inits[0]
        # the broadcast ends at the origin: the edge's packager stops with its router
        await origin.get("piped-hls", pub.session_id, "whip").end()
        assert await wait_until(lambda: packager.closed and "piped-hls" not in edge.routers, 5)
    finally:
        await pub.close()
        await origin.close()
        await edge.close()


async def test_hls_turned_off(aiohttp_client, settings) -> None:
    settings.hls = False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/hls/someshow/somekey/live.m3u8")
    assert resp.status == 501 and (await resp.json())["error"]["code"] == "hls_disabled"

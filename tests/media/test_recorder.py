"""Recording: remux without re-encode to WebM (VP8) / Matroska (H.264), listed and downloaded over HTTP."""

from __future__ import annotations

import asyncio
import time

import av
import pytest
from aiohttp.test_utils import TestClient

from media.publish import Publisher, PublishOptions
from server.media_api import RELAY

from .peers import SMALL, wait_until


@pytest.mark.parametrize(
    ("codec", "ext", "decoder"), [("vp8", "webm", "vp8"), ("h264", "mkv", "h264")]
)
async def test_record_list_download(
    client: TestClient, make_show, codec: str, ext: str, decoder: str, tmp_path
) -> None:
    show_id, host_token = await make_show()
    auth = {"Authorization": f"Bearer {host_token}"}
    publisher = Publisher(
        str(client.make_url("")).rstrip("/"),
        show_id,
        host_token,
        PublishOptions(codec=codec, keyint_s=1.0, **SMALL),
    )
    await publisher.start()
    try:
        router = client.app[RELAY].routers[show_id]
        # a keyframe is cached (the recording starts from one) and the audio track is up
        assert await wait_until(
            lambda: router.producers["video"].gop.keyframes >= 1 and "audio" in router.producers, 15
        )
        resp = await client.post(f"/api/shows/{show_id}/recordings", headers=auth)
        assert resp.status == 201, await resp.text()
        name = (await resp.json())["recording"]["name"]
        assert name.endswith("." + ext)
        resp = await client.post(f"/api/shows/{show_id}/recordings", headers=auth)
        assert resp.status == 409
        recorder = router.recorder
        assert recorder is not None
        video = next(t for t in recorder.tracks if t.kind == "video")
        # 1.5 s of video written (≈ 45 frames at 30 fps): enough for the file checks below
        assert await wait_until(lambda: video.last_pts >= 1.5 * video.clock, 20), video.last_pts
        # Written a cluster (a second) at a time while recording: the listing's size grows and
        # what is on disk already decodes (a crash keeps all but the last second).
        listing = await (await client.get(f"/api/shows/{show_id}/recordings", headers=auth)).json()
        (entry,) = listing["recordings"]
        assert entry["recording"] and entry["bytes"] > 5_000, entry
        with av.open(str(recorder.path)) as partial:
            assert sum(1 for _ in partial.decode(partial.streams.video[0])) >= 10
        resp = await client.post(f"/api/shows/{show_id}/recordings/stop", headers=auth)
        assert resp.status == 200 and (await resp.json())["recording"]["bytes"] > 10_000
    finally:
        await publisher.stop()

    listing = await (await client.get(f"/api/shows/{show_id}/recordings", headers=auth)).json()
    assert [r["name"] for r in listing["recordings"]] == [name]
    resp = await client.get(f"/api/shows/{show_id}/recordings/{name}", headers=auth)
    assert resp.status == 200
    path = tmp_path / name
    path.write_bytes(await resp.read())

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == decoder
        assert container.streams.audio and container.streams.audio[0].codec_context.name == "opus"
        frames = [f for f in container.decode(video)]
    assert len(frames) >= 20  # ≥ 1.5 s at 30 fps, decodable from the first frame
    assert (frames[0].width, frames[0].height) == (320, 240)

    resp = await client.get(f"/api/shows/{show_id}/recordings/..%2Fsecret.webm", headers=auth)
    assert resp.status in (400, 404)


def _span(container: av.container.InputContainer, stream: av.stream.Stream) -> tuple[float, float]:
    """(first pts, end of the last packet) of ``stream`` in seconds."""
    starts, ends = [], []
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        start = float(packet.pts * packet.time_base)
        duration = float((packet.duration or 0) * packet.time_base) or (
            1 / 30 if stream.type == "video" else 0.02
        )
        starts.append(start)
        ends.append(start + duration)
    return min(starts), max(ends)


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_recording_starts_at_record_with_audio_and_video_aligned(
    client: TestClient, make_show, codec: str, tmp_path
) -> None:
    """Long GOPs (3 s) so the cached keyframe predates Record: the file must not start there."""
    show_id, host_token = await make_show()
    auth = {"Authorization": f"Bearer {host_token}"}
    publisher = Publisher(
        str(client.make_url("")).rstrip("/"),
        show_id,
        host_token,
        PublishOptions(codec=codec, keyint_s=3.0, **SMALL),
    )
    async with asyncio.timeout(90):  # a stalled peer fails the test with its traceback
        await publisher.start()
        try:
            router = client.app[RELAY].routers[show_id]

            def cached_span() -> float:
                snapshot = router.producers["video"].gop.snapshot()
                return (snapshot[-1].timestamp - snapshot[0].timestamp) / 90000 if snapshot else 0.0

            # the cached keyframe is ≥ 1 s old and both tracks have had an RTCP sender report
            assert await wait_until(
                lambda: cached_span() >= 1.0 and all(p.sr for p in router.producers.values()), 15
            ), (
                cached_span(),
                {k: p.sr for k, p in router.producers.items()},
                {k: p.packets_received for k, p in router.producers.items()},
                publisher.pc.connectionState if publisher.pc else None,
            )
            pressed = time.monotonic()
            resp = await client.post(f"/api/shows/{show_id}/recordings", headers=auth)
            assert resp.status == 201, await resp.text()
            name = (await resp.json())["recording"]["name"]
            recorder = router.recorder
            assert recorder is not None
            video = next(t for t in recorder.tracks if t.kind == "video")
            # the file starts at the keyframe the Record asked for: when it came depends on the
            # publisher's encoder (slow under load), so the lower bound is counted from there
            assert await wait_until(lambda: video.started, 10)
            keyframe_seen = time.monotonic()
            await asyncio.sleep(3.0)  # the length of the recording itself
            stopping = time.monotonic()
            resp = await client.post(f"/api/shows/{show_id}/recordings/stop", headers=auth)
            stopped = time.monotonic()
            assert resp.status == 200
        finally:
            await asyncio.wait_for(publisher.stop(), 15)

    resp = await client.get(f"/api/shows/{show_id}/recordings/{name}", headers=auth)
    path = tmp_path / name
    path.write_bytes(await resp.read())
    with av.open(str(path)) as container:
        video_start, video_end = _span(container, container.streams.video[0])
    with av.open(str(path)) as container:
        audio_start, audio_end = _span(container, container.streams.audio[0])
    with av.open(str(path)) as container:
        first = next(container.decode(video=0))  # decodable from the first frame
        assert (first.width, first.height) == (320, 240)
    assert abs(video_start - audio_start) < 0.1, (video_start, audio_start)
    # The recording ran from the requested keyframe to the server's handling of Stop: at
    # least from when the test saw that keyframe (less one poll and a frame) to the stop's
    # request, at most from the start's request to the stop's answer. The file's length is in
    # the publisher's media time: a synthetic encoder starved of CPU stamps the frames it
    # catches up on at their ideal times, so media time may run up to ~10 % ahead of the wall.
    shortest, longest = stopping - keyframe_seen - 0.1, (stopped - pressed) * 1.1 + 0.05
    for start, end in ((video_start, video_end), (audio_start, audio_end)):
        assert shortest <= end - start <= longest, (start, end, shortest, longest)

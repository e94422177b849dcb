"""Recording: remux without re-encode to WebM (VP8) / Matroska (H.264), listed and downloaded over HTTP."""

from __future__ import annotations

import asyncio

import av
import pytest
from aiohttp.test_utils import TestClient

from media.publish import Publisher, PublishOptions

from .peers import SMALL


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
        await asyncio.sleep(1.2)  # a keyframe is cached
        resp = await client.post(f"/api/shows/{show_id}/recordings", headers=auth)
        assert resp.status == 201, await resp.text()
        name = (await resp.json())["recording"]["name"]
        assert name.endswith("." + ext)
        resp = await client.post(f"/api/shows/{show_id}/recordings", headers=auth)
        assert resp.status == 409
        await asyncio.sleep(2.5)
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
    assert (
        len(frames) >= 20
    )  # ~2.5 s at 30 fps (fewer on a loaded machine), decodable from the first frame
    assert (frames[0].width, frames[0].height) == (320, 240)

    resp = await client.get(f"/api/shows/{show_id}/recordings/..%2Fsecret.webm", headers=auth)
    assert resp.status in (400, 404)

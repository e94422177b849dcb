"""GStreamer 1.22 webrtcbin as a real third-party WHIP publisher and WHEP player (VP8, H.264).

GStreamer's DTLS has an RSA certificate; before liveshop answered ``a=setup:passive`` (and
offered RSA suites as a DTLS client) the handshake failed with ``no shared cipher``. The
peer is ``tests/media/gst_peer.py`` run by the system Python (python3-gi), over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from media.publish import Publisher, PublishOptions

from .peers import SMALL, TestViewer, wait_until

GST_PEER = Path(__file__).with_name("gst_peer.py")
SYSTEM_PYTHON = "/usr/bin/python3"
TEST_BUDGET_S = 90


class GstPeer:
    """The running gst_peer.py: its stdout events and stderr, collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.err: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        self.readers = [
            asyncio.ensure_future(self._read(proc.stdout, self.lines)),
            asyncio.ensure_future(self._read(proc.stderr, self.err)),
        ]

    @staticmethod
    async def _read(stream: asyncio.StreamReader, into: list[str]) -> None:
        async for raw in stream:
            into.append(raw.decode(errors="replace").rstrip())

    def has(self, prefix: str) -> bool:
        return any(line.startswith(prefix) for line in self.lines)

    @property
    def stderr(self) -> str:
        """What the peer said on stderr so far (never waits for it to exit)."""
        return "\n".join(self.err[-40:])


@contextlib.asynccontextmanager
async def gst_peer(*args: str) -> AsyncIterator[GstPeer]:
    proc = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON,
        str(GST_PEER),
        *args,
        "--local-ip",
        "127.0.0.1",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    peer = GstPeer(proc)
    try:
        yield peer
    finally:
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()  # EOF: the peer DELETEs its session and exits
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.wait_for(asyncio.gather(*peer.readers), 10)


def _base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


@pytest.mark.parametrize(
    ("codec", "setup", "answered"),
    [
        ("vp8", "actpass", "passive"),  # liveshop is the DTLS server (its ECDSA certificate)
        ("h264", "actpass", "passive"),
        ("vp8", "passive", "active"),  # liveshop is the client: must offer ECDHE-RSA suites
    ],
)
async def test_gstreamer_publishes_aiortc_decodes(
    client: TestClient, make_show, guest_token, codec: str, setup: str, answered: str
) -> None:
    show_id, host_token = await make_show()
    url = f"{_base(client)}/whip/{show_id}"
    extra = ["--setup", setup] if setup != "actpass" else []
    async with (
        asyncio.timeout(TEST_BUDGET_S),
        gst_peer("publish", url, host_token, "--codec", codec, *extra) as gst,
    ):
        assert await wait_until(
            lambda: gst.has("state connected") or gst.proc.returncode is not None, 20
        )
        assert gst.has("state connected"), (gst.lines, gst.stderr)
        assert f"answer a=setup:{answered}" in gst.lines

        token = await guest_token(show_id)
        viewer = TestViewer()
        try:
            resp = await client.post(
                f"/whep/{show_id}",
                data=await viewer.offer(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
            )
            assert resp.status == 201, await resp.text()
            await viewer.answer(await resp.text())
            await viewer.wait_frames(15, within=20)
            assert len(viewer.frames) >= 15
            assert viewer.frames[-1] == (320, 240)
            assert await wait_until(lambda: viewer.audio_frames > 10, 5)
        finally:
            await viewer.close()
    assert gst.proc.returncode == 0, gst.stderr


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_aiortc_publishes_gstreamer_decodes(
    client: TestClient, make_show, guest_token, codec: str
) -> None:
    show_id, host_token = await make_show()
    publisher = Publisher(
        _base(client), show_id, host_token, PublishOptions(codec=codec, keyint_s=1.0, **SMALL)
    )
    async with asyncio.timeout(TEST_BUDGET_S):  # a hang anywhere fails here, with its traceback
        await publisher.start()
        try:
            token = await guest_token(show_id)
            async with gst_peer(
                "play", f"{_base(client)}/whep/{show_id}", token, "--codec", codec, "--frames", "30"
            ) as gst:
                try:
                    code = await asyncio.wait_for(gst.proc.wait(), 30)
                except TimeoutError:
                    gst.proc.kill()
                    code = await gst.proc.wait()
                assert code == 0, (gst.lines, gst.stderr)
                assert gst.has("decoded 30 320x240"), gst.lines
        finally:
            await asyncio.wait_for(publisher.stop(), 15)

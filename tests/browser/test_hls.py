"""LL-HLS in real headless Chromium: hls.js plays a synthetic H.264 publisher, danmaku still flies.

The publisher is ``python -m media.publish`` (aiortc, H.264 over WHIP) in a process of its own; the
viewer page opens with ``?hls=1`` and must advance ``currentTime`` with hls.js in low-latency mode;
the studio shows that HLS is on.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT

from .conftest import Show, open_viewer, shot, viewer_chat


@pytest.fixture
def h264_show(make_show: Any) -> Iterator[Show]:
    show = make_show("LL-HLS show")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "media.publish",
            "--url",
            show.server.url,
            "--show",
            show.id,
            "--token",
            show.host_token,
            "--codec",
            "h264",
            "--width",
            "320",
            "--height",
            "240",
            "--bitrate",
            "300000",
            "--keyint",
            "10",  # the packager's PLIs set the segment cadence
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("publishing"), line
        yield show
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_hls_plays_in_chromium_with_danmaku(h264_show: Show, new_page: Any) -> None:
    page = new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{h264_show.watch_url}?hls=1&name=Hana")
    page.wait_for_function("() => document.querySelector('#conn').dataset.state === 'open'")
    page.wait_for_function("() => window.liveshop.player && window.liveshop.player.mode === 'hls'")
    page.wait_for_function(
        "() => document.querySelector('#video').currentTime > 1.0", timeout=40_000
    )
    first = page.evaluate("() => document.querySelector('#video').currentTime")
    page.wait_for_function(
        f"() => document.querySelector('#video').currentTime > {first} + 1.0", timeout=20_000
    )
    assert page.evaluate("() => window.liveshop.state.videoState") == "playing"
    assert page.evaluate("() => window.liveshop.player.hls.lowLatencyMode") is True
    latency = page.evaluate("() => window.liveshop.player.latency")
    assert latency is not None and 0 < latency < 10  # behind the live edge's PROGRAM-DATE-TIME
    # the overlay is the same for HLS viewers: a danmaku from this viewer flies over the video
    viewer_chat(page, "hello from HLS")
    page.locator("#danmaku .danmaku-item", has_text="hello from HLS").first.wait_for()
    shot(page, "viewer-hls")
    # others' comments wait for the picture they answer: held for the player's latency
    assert 0 < page.evaluate("() => window.liveshop.player.delayMs") < 10_000
    other = new_page()
    open_viewer(other, h264_show, "Olu")
    viewer_chat(other, "from a WebRTC viewer")
    page.locator("#danmaku .danmaku-item", has_text="from a WebRTC viewer").first.wait_for()


def test_studio_shows_hls_on(h264_show: Show, new_page: Any) -> None:
    page = new_page()
    page.goto(h264_show.host_url)
    page.wait_for_function(
        "() => document.querySelector('#hls-state').dataset.available === 'true'", timeout=30_000
    )
    assert page.locator("#hls-state").text_content().startswith("HLS on")


def test_viewer_page_without_hls_param_still_uses_webrtc(h264_show: Show, new_page: Any) -> None:
    page = new_page()
    open_viewer(page, h264_show, "Wes")
    page.wait_for_function("() => window.liveshop.state.videoState === 'playing'", timeout=30_000)
    assert page.evaluate("() => window.liveshop.player.mode") == "webrtc"


def test_viewer_falls_back_to_hls_when_webrtc_fails(h264_show: Show, new_page: Any) -> None:
    page = new_page()
    # a network where WHEP never works (here: refused by a proxy in front of the node)
    page.route(
        "**/whep/**",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": {"code": "unavailable", "message": "no WebRTC here"}}',
        ),
    )
    open_viewer(page, h264_show, "Fay")
    page.wait_for_function("() => window.liveshop.player.mode === 'hls'", timeout=30_000)
    page.wait_for_function(
        "() => document.querySelector('#video').currentTime > 1.0", timeout=40_000
    )
    page.wait_for_function("() => window.liveshop.state.videoState === 'playing'")

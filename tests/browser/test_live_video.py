"""The host studio goes live over WHIP and a viewer page plays it over WHEP."""

from __future__ import annotations

import time
from typing import Any

from .conftest import WAIT_MS, shot

FRAMES_DECODED_JS = """async () => {
  const pc = window.liveshop && window.liveshop.player && window.liveshop.player.pc;
  if (!pc) return 0;
  const stats = await pc.getStats();
  let frames = 0;
  stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0; });
  return frames;
}"""

FRAMES_ENCODED_JS = """async () => {
  const pc = window.liveshop && window.liveshop.publisher && window.liveshop.publisher.pc;
  if (!pc) return 0;
  const stats = await pc.getStats();
  let frames = 0;
  stats.forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'video') frames += r.framesEncoded || 0; });
  return frames;
}"""


def go_live(page: Any) -> None:
    """Start the camera and go live from an open studio page."""
    page.get_by_role("button", name="Start camera").click()
    page.get_by_role("button", name="Go live").wait_for()
    page.wait_for_function("() => !document.querySelector('#golive-btn').disabled", timeout=WAIT_MS)
    page.get_by_role("button", name="Go live").click()
    page.wait_for_function("() => document.querySelector('#publish-state').textContent === 'LIVE'", timeout=WAIT_MS)


def wait_frames(page: Any, js: str, minimum: int = 1, timeout_ms: int = 10_000) -> int:
    """Poll getStats() until at least ``minimum`` frames (returns the last count, maybe short)."""
    deadline = time.monotonic() + timeout_ms / 1000
    frames = 0
    while time.monotonic() < deadline:
        frames = int(page.evaluate(js))
        if frames >= minimum:
            break
        page.wait_for_timeout(200)
    return frames


def test_host_goes_live_and_viewer_plays(make_show: Any, new_page: Any) -> None:
    show = make_show("Spring sneaker drop")
    host = new_page()
    host.goto(show.host_url)
    host.get_by_role("heading", name="Broadcast").wait_for()
    go_live(host)
    assert wait_frames(host, FRAMES_ENCODED_JS) > 0
    host.wait_for_function("() => document.querySelector('#show-status').textContent === 'LIVE'")

    viewer = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    viewer.goto(show.watch_url)
    # The spec: frames decoded > 0 within 10 s of opening the page (read from getStats()).
    frames = wait_frames(viewer, FRAMES_DECODED_JS, timeout_ms=10_000)
    assert frames > 0
    size = viewer.evaluate("() => [document.querySelector('#video').videoWidth, document.querySelector('#video').videoHeight]")
    assert size[0] > 0 and size[1] > 0
    assert viewer.locator("#live-badge").inner_text() == "LIVE"
    shot(viewer, "viewer_playing")
    shot(host, "studio_live")
    viewer.locator("#reconnecting").wait_for(state="hidden")
    assert not [e for e in viewer.errors if "favicon" not in e], viewer.errors

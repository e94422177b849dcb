"""The host studio goes live over WHIP and a viewer page plays it over WHEP."""

from __future__ import annotations

from typing import Any

from .conftest import FRAMES_DECODED_JS, FRAMES_ENCODED_JS, go_live, open_studio, poll, shot


def test_host_goes_live_and_viewer_plays(make_show: Any, new_page: Any) -> None:
    show = make_show("Spring sneaker drop")
    host = new_page()
    open_studio(host, show)
    go_live(host)
    assert poll(host, FRAMES_ENCODED_JS) > 0
    host.wait_for_function("() => document.querySelector('#show-status').textContent === 'LIVE'")

    viewer = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    viewer.goto(show.watch_url)
    # The spec: frames decoded > 0 within 10 s of opening the page (read from getStats()).
    assert poll(viewer, FRAMES_DECODED_JS, timeout_ms=10_000) > 0
    size = viewer.evaluate("() => [document.querySelector('#video').videoWidth, document.querySelector('#video').videoHeight]")
    assert size[0] > 0 and size[1] > 0
    assert viewer.locator("#live-badge").inner_text() == "LIVE"
    viewer.locator("#reconnecting").wait_for(state="hidden")
    # The host sees the viewer in the live stats.
    host.wait_for_function("() => Number(document.querySelector('#st-viewers').textContent) >= 1")
    shot(viewer, "viewer_playing")
    shot(host, "studio_live")

    # Ending the broadcast: the viewer page shows the show has ended.
    host.get_by_role("button", name="End", exact=True).click()
    host.wait_for_function("() => document.querySelector('#publish-state').textContent === 'ended'")
    assert not [e for e in viewer.errors if "favicon" not in e], viewer.errors

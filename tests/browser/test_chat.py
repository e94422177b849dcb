"""Chat: a viewer's message reaches the host's chat panel and a second viewer's danmaku overlay;
errors show inline; a dropped WebSocket shows "reconnecting" and recovers the missed chat."""

from __future__ import annotations

from typing import Any

from .conftest import open_studio, open_viewer, shot, unlabelled_controls, viewer_chat


def test_viewer_chat_reaches_host_and_second_viewer_overlay(make_show: Any, new_page: Any) -> None:
    show = make_show("Chat show")
    host = new_page()
    open_studio(host, show)
    mia = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    open_viewer(mia, show, "Mia")
    leo = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    open_viewer(leo, show, "Leo")

    viewer_chat(mia, "hello from Mia")
    host.locator("#chat-list li", has_text="hello from Mia").wait_for()
    assert "Mia" in host.locator("#chat-list li", has_text="hello from Mia").inner_text()
    leo.locator("#danmaku .danmaku-item", has_text="hello from Mia").wait_for()
    # The overlay never takes pointer events (it must not block the controls under it).
    assert (
        leo.evaluate("() => getComputedStyle(document.querySelector('#danmaku')).pointerEvents")
        == "none"
    )
    shot(leo, "viewer_danmaku")

    # Danmaku off switch and density control.
    leo.get_by_role("button", name="Danmaku on").click()
    assert leo.locator("#danmaku").is_hidden()
    assert leo.get_by_role("button", name="Danmaku off").get_attribute("aria-pressed") == "false"
    viewer_chat(mia, "while it is off")
    leo.locator("#chat-recent li", has_text="while it is off").wait_for()
    assert leo.locator("#danmaku .danmaku-item", has_text="while it is off").count() == 0
    leo.get_by_role("button", name="Danmaku off").click()
    leo.get_by_label("Danmaku density").select_option("high")
    assert leo.evaluate("() => window.liveshop.danmaku.density") == "high"

    # Likes: taps are grouped and the host's stats count them.
    for _ in range(3):
        leo.get_by_role("button", name="Like").click()
    host.wait_for_function("() => Number(document.querySelector('#st-likes').textContent) >= 3")
    assert unlabelled_controls(leo) == []
    assert unlabelled_controls(host) == []

    # Moderation: the host deletes the message; it disappears from the other viewer's chat.
    leo.locator("#chat-recent li", has_text="hello from Mia").wait_for()
    row = host.locator("#chat-list li", has_text="hello from Mia")
    row.hover()
    row.get_by_role("button", name="Delete").click()
    leo.locator("#chat-recent li", has_text="hello from Mia").wait_for(state="detached")

    # Errors are shown inline: a banned word, then the rate limit (burst 3, 1/s).
    viewer_chat(mia, "the best price ever")
    mia.locator("#chat-error", has_text="not allowed").wait_for()
    # Six sends in one burst (as fast as a thumb, however slow the machine): the bucket cannot
    # refill in between, so at least two are refused and the last word on screen is the limit.
    mia.evaluate(
        """() => {
            const form = document.querySelector('#chat-form');
            const input = document.querySelector('#chat-input');
            for (let n = 0; n < 6; n++) { input.value = `spam ${n}`; form.requestSubmit(); }
        }"""
    )
    mia.locator("#chat-error", has_text="Slow down").wait_for()
    shot(mia, "viewer_chat_error")
    shot(host, "studio_chat")


def test_websocket_reconnect_recovers_missed_chat(make_show: Any, new_page: Any) -> None:
    show = make_show("Reconnect show")
    host = new_page()
    open_studio(host, show)
    viewer = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    open_viewer(viewer, show, "Ivy")
    host.get_by_label("Message").fill("welcome everyone")
    host.get_by_role("button", name="Send").click()
    viewer.locator("#chat-recent li", has_text="welcome everyone").wait_for()

    viewer.evaluate("() => window.liveshop.socket.simulateOutage(120000)")
    viewer.locator("#reconnecting").wait_for(state="visible")
    assert "Reconnecting" in viewer.locator("#reconnecting").inner_text()
    shot(viewer, "viewer_reconnecting")
    host.get_by_label("Message").fill("sent while you were away")
    host.get_by_role("button", name="Send").click()
    host.locator("#chat-list li", has_text="sent while you were away").wait_for()
    assert viewer.locator("#chat-recent li", has_text="sent while you were away").count() == 0
    assert viewer.evaluate("() => window.liveshop.socket.state") == "reconnecting"

    viewer.evaluate("() => window.liveshop.socket.resume()")
    viewer.locator("#reconnecting").wait_for(state="hidden")
    viewer.locator("#chat-recent li", has_text="sent while you were away").wait_for()
    assert viewer.evaluate("() => window.liveshop.socket.state") == "open"
    # Recovered from history after the last seen id (no "history lost"), nothing repeated.
    assert viewer.evaluate("() => window.liveshop.socket.welcome.recovered") is True
    assert viewer.locator("#chat-recent li", has_text="welcome everyone").count() == 1

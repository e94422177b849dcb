"""Issue 17 item 7 in real Chromium: a muted viewer is told at once (with a countdown, again
after a reload, cleared on unmute)."""

from __future__ import annotations

import re
from typing import Any

from .conftest import open_studio, open_viewer, shot, viewer_chat

MOBILE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
NOTICE = "#chat-error"


def _countdown(page: Any) -> str:
    page.locator(NOTICE, has_text="muted").wait_for(timeout=5_000)
    return str(page.locator(NOTICE).inner_text())


def test_a_muted_viewer_is_told_at_once_with_the_time_left(make_show: Any, new_page: Any) -> None:
    show = make_show("Mute notice")
    host = new_page(viewport={"width": 1366, "height": 900})
    open_studio(host, show)
    viewer = new_page(**MOBILE)
    open_viewer(viewer, show, "Mia")
    viewer_chat(viewer, "first!")
    item = host.locator("#chat-list li", has_text="first!")
    item.wait_for()
    item.hover()
    item.get_by_role("button", name=re.compile("^Mute Mia")).click()

    # Told without trying to send anything, with the time left, counting down.
    first = _countdown(viewer)
    assert re.search(r"(9:5\d|10:00) left", first), first
    viewer.wait_for_function(f"() => document.querySelector('{NOTICE}').textContent !== {first!r}")
    assert "left" in viewer.locator(NOTICE).inner_text()
    shot(viewer, "viewer_muted_notice")

    # A reload (or a reconnect) tells them again: the mute comes with the first batch.
    viewer.reload()
    viewer.wait_for_function("() => document.querySelector('#conn').dataset.state === 'open'")
    assert re.search(r"(9:[45]\d|10:00) left", _countdown(viewer))

    # Unmuting clears the notice at once.
    uid = item.get_attribute("data-uid")
    host.evaluate("(uid) => window.liveshop.socket.request('mod.unmute', { user_id: uid })", uid)
    viewer.wait_for_function(
        f"() => !document.querySelector('{NOTICE}').textContent.includes('muted')"
    )
    viewer_chat(viewer, "thanks")
    host.locator("#chat-list li", has_text="thanks").wait_for()

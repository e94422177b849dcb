"""Issue 17 items 7 and 8 in real Chromium: a muted viewer is told at once (with a countdown,
again after a reload, cleared on unmute); "Viewers now" and "N watching" count viewers, not staff."""

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


def test_viewer_counts_leave_out_the_host_and_moderators(make_show: Any, new_page: Any) -> None:
    show = make_show("Who is watching")
    host = new_page(viewport={"width": 1366, "height": 900})
    open_studio(host, show)
    status, minted = show.api(
        "POST", f"/api/shows/{show.id}/tokens", {"role": "moderator", "name": "Mo"}, show.host_token
    )
    assert status == 201, minted
    moderator = new_page(viewport={"width": 1366, "height": 900})
    moderator.goto(f"{show.server.url}/host/{show.id}#token={minted['token']}")
    moderator.wait_for_function("() => document.querySelector('#conn').dataset.state === 'open'")
    viewers = []
    for name in ("Mia", "Leo"):
        page = new_page(**MOBILE)
        open_viewer(page, show, name)
        viewers.append(page)

    # Two viewers: the host's studio and the moderator's page are not counted.
    host.wait_for_function("() => document.querySelector('#st-viewers').textContent === '2'")
    for page in viewers:
        page.wait_for_function("() => document.querySelector('#viewer-count').textContent === '2'")
    viewers[1].close()
    host.wait_for_function("() => document.querySelector('#st-viewers').textContent === '1'")
    viewers[0].wait_for_function(
        "() => document.querySelector('#viewer-count').textContent === '1'"
    )
    # A page opened later reads the same count in its welcome.
    late = new_page(**MOBILE)
    open_viewer(late, show, "Ivy")
    late.wait_for_function(
        "() => ['1', '2'].includes(document.querySelector('#viewer-count').textContent)"
    )
    host.wait_for_function("() => document.querySelector('#st-viewers').textContent === '2'")

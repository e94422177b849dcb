"""A PK battle in real Chromium: two studios go live, A invites B from its PK panel, B accepts;
A's viewer page (a phone) plays both hosts side by side with the score bar and the countdown,
its likes move the bar in both studios, and the winner is announced when the time is up."""

from __future__ import annotations

import re
from typing import Any

from .conftest import go_live, open_studio, open_viewer, shot

PLAYING_JS = """() => [...document.querySelectorAll('#stage .stage-tile video')]
  .filter((v) => v.videoWidth > 0 && v.currentTime > 0.5 && !v.paused).length"""


def test_pk_battle_on_the_viewer_page(make_show: Any, new_page: Any) -> None:
    show_a, show_b = make_show("Sneaker corner"), make_show("Tea house")
    studio_a = new_page(viewport={"width": 1366, "height": 900})
    studio_b = new_page(viewport={"width": 1366, "height": 900})
    for page, show in ((studio_a, show_a), (studio_b, show_b)):
        open_studio(page, show)
        go_live(page)
    viewer = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    open_viewer(viewer, show_a, "Mia")
    viewer.wait_for_function(f"() => ({PLAYING_JS})() >= 1")

    studio_a.get_by_label("Opponent show id").fill(show_b.id)
    studio_a.get_by_label("Length (s)").fill("25")
    studio_a.get_by_role("button", name="Invite to PK").click()
    invite = studio_b.locator(".pk-invite", has_text="Sneaker corner")
    invite.get_by_role("button", name="Accept").click()

    # Both hosts side by side on the phone, the bar with both names and a running countdown.
    viewer.wait_for_function(f"() => ({PLAYING_JS})() >= 2", timeout=20_000)
    assert viewer.locator("#stage .stage-tile").count() == 2
    bar = viewer.locator(".pk-bar")
    bar.wait_for(state="visible")
    assert bar.locator(".pk-name.ours").inner_text() == "Sneaker corner"
    assert bar.locator(".pk-name.theirs").inner_text() == "Tea house"
    first = bar.locator(".pk-timer").inner_text()
    assert re.fullmatch(r"0:[0-2]\d", first), first
    viewer.wait_for_function(f"() => document.querySelector('.pk-timer').textContent !== {first!r}")
    boxes = [viewer.locator(".stage-tile").nth(i).bounding_box() for i in range(2)]
    assert boxes[0] and boxes[1] and boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"] + 1

    # The viewer's likes score for A: the same numbers in A's studio and in B's.
    for _ in range(3):
        viewer.get_by_role("button", name="Like").click()
    viewer.wait_for_function("() => document.querySelector('.pk-bar').dataset.ours === '3'")
    studio_a.wait_for_function("() => document.querySelector('#pk .pk-bar').dataset.ours === '3'")
    studio_b.wait_for_function("() => document.querySelector('#pk .pk-bar').dataset.theirs === '3'")
    shot(viewer, "viewer_pk")
    shot(studio_b, "studio_pk")

    # Time up: A wins, announced on the page; the opponent's tile goes.
    result = viewer.locator(".pk-result")
    result.wait_for(state="visible", timeout=40_000)
    assert "You won!" in result.inner_text() and "Sneaker corner" in result.inner_text()
    viewer.wait_for_function("() => document.querySelectorAll('#stage .stage-tile').length === 1")
    studio_b.locator("#pk .pk-result", has_text="They won!").wait_for()

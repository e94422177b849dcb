"""The shoppable replay in real headless Chromium.

A synthetic publisher (``python -m media.publish``, VP8 over WHIP) is live; the host records
while a viewer chats and the host pins products; the show ends. The viewer page's end card and
the studio's end confirmation link to the replay; ``/replay/ID`` plays the WebM (seeking goes
through HTTP range requests), shows the pinned product and danmaku of the moment it is seeked
to, and its Buy makes one normal order paid through the checkout.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

from .conftest import Show, open_viewer, shot, viewer_chat


@pytest.fixture
def live_show(
    make_show: Any, tmp_path: Path
) -> Iterator[tuple[Show, subprocess.Popen[bytes], Path]]:
    show = make_show("Replay show")
    log_path = tmp_path / "publisher.log"
    with log_path.open("wb") as log:  # a file, not a pipe: a full pipe would stall the publisher
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "media.publish", "--url", show.server.url, "--show", show.id,
                "--token", show.host_token, "--codec", "vp8", "--width", "320", "--height", "240",
                "--bitrate", "300000", "--keyint", "1", "--fps", "20",
                "--preencode", "2",  # encoded once, looped: the loaded machine cannot stall it
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        assert _wait(
            lambda: log_path.read_text().startswith("publishing") or proc.poll() is not None
        )
        assert proc.poll() is None, log_path.read_text()
        yield show, proc, log_path
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _product(show: Show, title: str, price: int) -> str:
    status, body = show.api(
        "POST", f"/api/shows/{show.id}/products",
        {"title": title, "price": price, "stock": 5}, show.host_token,
    )  # fmt: skip
    assert status == 201, body
    return str(body["product"]["id"])


def _pin(show: Show, product_id: str, on: bool = True) -> None:
    path = f"/api/products/{product_id}/pin"
    status, body = show.api("POST" if on else "DELETE", path, {} if on else None, show.host_token)
    assert status == 200, body


def _wait(check: Any, within_s: float = 20.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_replay_seeks_shows_the_moment_and_buys(
    live_show: tuple[Show, subprocess.Popen[bytes], Path], new_page: Any
) -> None:
    show, publisher, publisher_log = live_show
    runner = _product(show, "Aero Runner", 2000)
    scarf = _product(show, "Silk Scarf", 3900)
    assert _wait(lambda: show.api("GET", f"/api/shows/{show.id}")[1]["show"]["status"] == "live")

    viewer = new_page(viewport={"width": 390, "height": 844})
    open_viewer(viewer, show, "Mia")
    studio = new_page(viewport={"width": 1366, "height": 900})
    studio.goto(show.host_url)
    studio.wait_for_function(
        "() => window.liveshop && window.liveshop.socket && window.liveshop.socket.state === 'open'"
    )

    status, body = show.api("POST", f"/api/shows/{show.id}/recordings", {}, show.host_token)
    assert status == 201, body
    # what happens during the recording, spaced so each moment is its own (the recording's content)
    time.sleep(1.0)
    _pin(show, runner)
    viewer_chat(viewer, "first look at the runner")
    viewer.locator("#chat-recent li", has_text="first look").wait_for()
    time.sleep(2.0)
    _pin(show, runner, on=False)
    _pin(show, scarf)
    viewer_chat(viewer, "that scarf though")
    viewer.locator("#chat-recent li", has_text="that scarf").wait_for()
    time.sleep(2.0)
    status, body = show.api("POST", f"/api/shows/{show.id}/recordings/stop", {}, show.host_token)
    assert status == 200 and body["recording"]["published"] is True, body
    replay_id = body["recording"]["replay_id"]

    # the show ends: the viewer's end card and the studio's confirmation link to the replay
    location = publisher_log.read_text().splitlines()[0].rsplit("-> ", 1)[1]
    request = urllib.request.Request(show.server.url + location, method="DELETE")
    request.add_header("Authorization", f"Bearer {show.host_token}")
    with urllib.request.urlopen(request, timeout=10) as resp:  # the host ends the broadcast
        assert resp.status == 200
    viewer.locator("#offline-text", has_text="This show has ended.").wait_for()
    link = viewer.locator("#replay-link")
    link.wait_for()
    assert link.get_attribute("href") == f"/replay/{replay_id}"
    studio_link = studio.locator("#end-confirm #end-replay-link")
    studio_link.wait_for()
    assert studio_link.get_attribute("href") == f"/replay/{replay_id}"

    status, timeline = show.api("GET", f"/api/replays/{replay_id}/timeline")
    assert status == 200, timeline
    events = timeline["events"]
    scarf_at = next(
        e["t"]
        for e in events
        if e["type"] == "products" and [p["id"] for p in e["pinned"]] == [scarf]
    )
    runner_at = next(
        e["t"]
        for e in events
        if e["type"] == "products" and [p["id"] for p in e["pinned"]] == [runner]
    )

    link.click()  # from the end card to the replay
    page = viewer
    page.wait_for_url(f"**/replay/{replay_id}")
    page.wait_for_function("() => document.querySelector('#video').readyState >= 1")
    duration = page.evaluate("() => document.querySelector('#video').duration")
    assert duration > scarf_at + 1, (duration, scarf_at, timeline["replay"])

    # seek into the scarf's moment: it plays on from there, with that moment's product and danmaku
    target = scarf_at + 0.6
    page.evaluate(
        """async (t) => { const v = document.querySelector('#video'); v.muted = true;
             v.currentTime = t; await v.play(); }""",
        target,
    )
    page.wait_for_function(
        f"() => document.querySelector('#video').currentTime > {target} + 0.4", timeout=20_000
    )
    page.locator(f"#products li[data-product='{scarf}']").wait_for()
    assert page.locator(f"#products li[data-product='{runner}']").count() == 0
    page.locator("#chat-recent li", has_text="that scarf though").wait_for()
    page.locator("#danmaku .danmaku-item", has_text="that scarf though").first.wait_for()
    shot(page, "replay-scarf-moment")

    # back to the runner's moment: the shop and chat follow the playhead
    back = runner_at + 0.5
    page.evaluate("(t) => { document.querySelector('#video').currentTime = t; }", back)
    page.wait_for_function(
        f"() => {{ const v = document.querySelector('#video'); return !v.seeking && v.currentTime > {back} + 0.3; }}",
        timeout=20_000,
    )
    page.locator(f"#products li[data-product='{runner}']").wait_for()
    assert page.locator(f"#products li[data-product='{scarf}']").count() == 0
    page.locator("#chat-recent li", has_text="first look at the runner").wait_for()
    assert page.locator("#chat-recent li", has_text="that scarf though").count() == 0

    # Buy after the show: a double tap still makes one order, paid through the checkout
    page.evaluate("() => document.querySelector('#video').pause()")
    page.locator(f"[data-buy='{runner}']").dblclick()
    page.locator("#checkout[open]").wait_for()
    page.get_by_role("button", name="Pay").click()
    page.locator("#order-done").wait_for()
    order_id = page.locator("#order-id").text_content()
    assert page.locator("#order-status").text_content() == "paid"
    status, orders = show.api("GET", f"/api/shows/{show.id}/orders", token=show.host_token)
    assert status == 200
    mine = [o for o in orders["orders"] if o["product_id"] == runner]
    assert [o["id"] for o in mine] == [order_id] and mine[0]["amount"] == 2000
    shot(page, "replay-paid")

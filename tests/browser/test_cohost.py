"""Co-host (issue 20) in real Chromium: the host invites, the co-host's studio publishes the cohost
stream, a phone-sized viewer page plays both side by side, the host removes the co-host."""

from __future__ import annotations

from typing import Any

from .conftest import go_live, open_studio, shot

# Per tile: [left, top, width, height, videoWidth, frames presented since the check started].
TILES_JS = """async () => {
  const tiles = [...document.querySelectorAll('#stage .stage-tile')];
  return Promise.all(tiles.map((tile) => new Promise((resolve) => {
    const video = tile.querySelector('video');
    const r = tile.getBoundingClientRect();
    let frames = 0;
    const tick = () => { frames += 1; if (frames < 3) video.requestVideoFrameCallback(tick); };
    video.requestVideoFrameCallback(tick);
    setTimeout(() => resolve([r.left, r.top, r.width, r.height, video.videoWidth, frames, tile.dataset.key]), 3000);
  })));
}"""


def test_viewer_sees_host_and_cohost_side_by_side(make_show: Any, new_page: Any) -> None:
    show = make_show("Two sellers, one screen")
    host = new_page(viewport={"width": 1366, "height": 900})
    open_studio(host, show)
    go_live(host)

    host.locator("#cohost-name").fill("Brand rep")
    host.get_by_role("button", name="Invite co-host").click()
    link = host.locator("#cohost-link")
    host.wait_for_function("() => document.querySelector('#cohost-link').value.includes('#token=')")
    invite_url = link.input_value()
    assert invite_url.startswith(f"{show.server.url}/host/{show.id}#token=")

    cohost = new_page(viewport={"width": 1366, "height": 900})
    cohost.goto(invite_url)
    cohost.get_by_role("heading", name="Broadcast (co-host)").wait_for()
    cohost.wait_for_function("() => document.querySelector('#conn').dataset.state === 'open'")
    assert cohost.locator("#recording").is_hidden() and cohost.locator("#commerce-col").is_hidden()
    go_live(cohost)

    # The host's studio sees the co-host live and plays their preview.
    host.locator("#cohost-state", has_text="Brand rep is live").wait_for()
    host.wait_for_function("() => document.querySelector('#cohost-preview').videoWidth > 0")

    viewer = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    viewer.goto(f"{show.watch_url}?name=Mia")
    viewer.wait_for_function("() => document.querySelectorAll('#stage .stage-tile').length === 2")
    viewer.wait_for_function(
        "() => [...document.querySelectorAll('#stage .stage-tile video')].every((v) => v.videoWidth > 0)"
    )
    tiles = viewer.evaluate(TILES_JS)
    assert [t[6] for t in tiles] == ["main", "cohost"]
    (l1, t1, w1, h1, vw1, f1, _), (l2, t2, w2, h2, vw2, f2, _) = tiles
    assert vw1 > 0 and vw2 > 0 and f1 >= 3 and f2 >= 3, tiles  # both playing: frames presented
    assert abs(t1 - t2) < 1 and abs(h1 - h2) < 1 and h1 > 100, tiles  # one row …
    assert l1 >= 0 and l1 + w1 <= l2 + 1 and l2 + w2 <= 390 + 1, tiles  # … side by side, on screen
    assert w1 > 150 and w2 > 150, tiles
    assert viewer.locator(".stage-tile[data-key='cohost'] .stage-label").inner_text() == "Brand rep"
    shot(viewer, "viewer_cohost_side_by_side")

    # The host removes the co-host: the viewer is back to one full-screen tile, the show goes on.
    host.get_by_role("button", name="Remove co-host").click()
    host.locator("#cohost-state", has_text="No co-host live").wait_for()
    viewer.wait_for_function("() => document.querySelectorAll('#stage .stage-tile').length === 1")
    assert viewer.locator("#live-badge").inner_text() == "LIVE"
    width = viewer.evaluate(
        "() => document.querySelector('#stage .stage-tile').getBoundingClientRect().width"
    )
    assert width >= 389

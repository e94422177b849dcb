"""Danmaku lanes: a burst of comments never overlaps on screen, and density limits the lanes used."""

from __future__ import annotations

from typing import Any

from .conftest import open_viewer, shot

OVERLAPS_JS = """() => {
  const rects = [...document.querySelectorAll('#danmaku .danmaku-item')].map((el) => el.getBoundingClientRect());
  let overlaps = 0;
  for (let i = 0; i < rects.length; i++)
    for (let j = i + 1; j < rects.length; j++) {
      const a = rects[i], b = rects[j];
      if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) overlaps++;
    }
  return [rects.length, overlaps];
}"""

DRAIN_JS = f"""async () => {{
  const overlapsOf = {OVERLAPS_JS};
  const danmaku = window.liveshop.danmaku;
  let most = 0, overlaps = 0, frames = 0;
  await new Promise((done) => {{
    const step = () => {{
      const [count, found] = overlapsOf();
      most = Math.max(most, count);
      overlaps += found;
      frames += 1;
      if (!danmaku.queue.length || frames >= 1200) done();
      else requestAnimationFrame(step);
    }};
    requestAnimationFrame(step);
  }});
  return [most, overlaps, frames, danmaku.queue.length];
}}"""


def test_danmaku_burst_never_overlaps(make_show: Any, new_page: Any) -> None:
    show = make_show("Danmaku show")
    viewer = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    open_viewer(viewer, show, "Eve")
    viewer.get_by_label("Danmaku density").select_option("high")
    viewer.evaluate(
        """() => { for (let i = 0; i < 40; i++)
             window.liveshop.danmaku.add({ text: `comment number ${i} ` + 'x'.repeat(i % 7 * 3) }); }"""
    )
    viewer.locator("#danmaku .danmaku-item").first.wait_for()
    # Sample the moving layer on every animation frame until the queue has drained (every
    # comment got a lane), in the page: no fixed waits, and many more samples than a poll.
    most, overlaps, frames, left = viewer.evaluate(DRAIN_JS)
    assert left == 0, (left, frames)
    assert most >= 5, (most, frames)
    assert overlaps == 0, (overlaps, frames)
    shot(viewer, "viewer_danmaku_burst")

    # Low density uses about a third of the lanes.
    lanes_high = viewer.evaluate("() => window.liveshop.danmaku.laneCount()")
    viewer.get_by_label("Danmaku density").select_option("low")
    lanes_low = viewer.evaluate("() => window.liveshop.danmaku.laneCount()")
    assert 1 <= lanes_low < lanes_high

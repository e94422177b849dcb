"""The studio's insight panel in Chromium: the uPlot chart fills with stats, the funnel shows bars."""

from __future__ import annotations

from typing import Any

from .conftest import add_product, open_studio, open_viewer, shot, viewer_chat


def test_studio_plots_stats_and_shows_the_product_funnel(make_show: Any, new_page: Any) -> None:
    show = make_show("Insight studio")
    host = new_page()
    open_studio(host, show)
    add_product(host, "Trail Cap", "15.00", 5)
    host.get_by_role("button", name="Pin Trail Cap").click()
    viewer = new_page()
    open_viewer(viewer, show, "Ivy")  # joins while the product is pinned: one impression
    viewer_chat(viewer, "hi")
    host.locator("#insight .uplot canvas").wait_for()
    # The chart gathers a point per stats push (~2 s) and the funnel lists the pinned product.
    host.wait_for_function(
        "() => { return document.querySelectorAll"
        "('#in-funnel li').length === 1 && /seen 1/.test(document.querySelector('#in-funnel')"
        ".textContent) }",
        timeout=15_000,
    )
    host.wait_for_function(
        "() => /interacting/.test(document.querySelector('#in-dwell').textContent)", timeout=15_000
    )
    host.locator("#insight .u-legend", has_text="Viewers").wait_for()
    shot(host, "studio_insight")

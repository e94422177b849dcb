"""The load tester's HTML report in real Chromium: verdict first, every plot drawn full width
with round, unit-labelled ticks (issue 17). Also the README's report picture."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import shot

ROOT = Path(__file__).resolve().parents[2]

TICKS_JS = """() => [...document.querySelectorAll('.plot')].map((p) => ({
  width: p.getBoundingClientRect().width,
  drawn: !!p.querySelector('.main-svg'),
  xtitle: (p.querySelector('.g-xtitle') || {}).textContent || '',
  ytitle: (p.querySelector('.g-ytitle') || {}).textContent || '',
  ticks: [...p.querySelectorAll('.xtick text, .ytick text')].map((t) => t.textContent),
}))"""
ROUND = re.compile(r"^(−|-)?(\d{1,3}(,\d{3})*|\d+)(\.\d{1,2})?$")


def test_report_reads_well_in_chromium(new_page: Any, tmp_path: Path) -> None:
    html, report = tmp_path / "report.html", tmp_path / "report.json"
    argv = [sys.executable, "-m", "loadtest", "chat", "--spawn-server", "--quiet", "--seed", "3",
            "--viewers", "30", "--chatters", "3", "--rate", "15", "--duration", "4", "--ramp", "60",
            "--slo", "p99<2000,errors<1%", "--html", str(html), "--json", str(report)]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert html.exists(), proc.stderr[-3000:]
    verdict = json.loads(report.read_text())["verdict"]
    page = new_page(viewport={"width": 1280, "height": 900})
    page.goto(html.as_uri())
    banner = page.locator("#verdict")
    assert banner.get_attribute("data-verdict") == verdict
    box = banner.bounding_box()
    assert box and box["y"] < 200  # the verdict is the first thing on the page
    assert page.locator("#slos tbody tr").count() == 2
    assert page.locator("#slos tbody tr").first.inner_text().split("\t")[:2] == [
        "p99",
        "< 2,000 ms",
    ]
    page.wait_for_function(
        "() => [...document.querySelectorAll('.plot')].every((p) => p.querySelector('.main-svg'))"
    )
    plots = page.evaluate(TICKS_JS)
    assert len(plots) >= 4
    main_width = page.evaluate("() => document.querySelector('main').clientWidth")
    for plot in plots:
        assert plot["drawn"] and plot["width"] >= 0.9 * main_width - 40, plot
        assert plot["xtitle"] and plot["ytitle"], plot  # units on both axes
        assert re.search(
            r"ms|\(s\)|%|clients|per second|samples|answers|units|fps", plot["ytitle"]
        ), plot
        odd = [t for t in plot["ticks"] if t and not ROUND.match(t)]
        assert odd == [], (plot["ytitle"], odd)
    shot(page, "loadtest_report", docs="report.png")
    if verdict == "inconclusive":
        assert page.locator("#saturated").is_visible()
        assert "OK" not in page.title()

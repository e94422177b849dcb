"""The load tester's ``hls`` scenario against a server it spawns: LL-HLS clients at the live edge.

CI runs a small crowd (the CLI default is 1,000; see docs/performance.md for that run).
"""

from __future__ import annotations

from pathlib import Path

from tests.loadtest.test_scenarios import assert_report, run_loadtest


def test_hls_clients_stay_within_one_part_of_live(tmp_path: Path) -> None:
    status, report, err = run_loadtest(
        tmp_path, "hls", "--clients", "20", "--duration", "4", "--ramp", "50",
        "--width", "320", "--height", "240", "--preencode", "2",
    )  # fmt: skip
    assert status == 0, err
    assert_report(report, "hls")
    hls = report["hls"]
    assert hls["clients"] == hls["clients_within_one_part"] == 20
    assert hls["reloads_per_client_s"] > 2  # one blocking reload per part (~0.27 s)
    assert hls["parts_fetched"] >= hls["reloads"] * 0.8 and hls["part_mbytes"] > 0
    assert report["latency_ms"]["p50"] is not None and report["error_codes"] == {}

"""The ``auction``, ``group-buy`` and ``poll`` scenarios, briefly, against a spawned server."""

from __future__ import annotations

from pathlib import Path

from .test_scenarios import assert_report, passed, run_loadtest


def test_poll(tmp_path: Path) -> None:
    status, report, err = run_loadtest(
        tmp_path, "poll", "--voters", "120", "--options", "3", "--ramp", "1000"
    )
    assert status == passed(report), err  # 3: checks held on a saturated tester
    assert_report(report, "poll")
    assert report["poll"]["tallies"] == [40, 40, 40] and report["poll"]["decisions_per_s"] > 0


def test_auction(tmp_path: Path) -> None:
    status, report, err = run_loadtest(
        tmp_path, "auction", "--bidders", "120", "--window", "3", "--cap", "6", "--ramp", "1000"
    )
    assert status == passed(report), err  # 3: checks held on a saturated tester
    assert_report(report, "auction")
    assert report["auction"]["bids_accepted"] >= 1 and report["auction"]["extensions_s"] > 0


def test_group_buy(tmp_path: Path) -> None:
    status, report, err = run_loadtest(
        tmp_path, "group-buy", "--joiners", "120", "--quantity", "60", "--sale-quantity", "10", "--ramp", "1000"
    )  # fmt: skip
    assert status == passed(report), err  # 3: checks held on a saturated tester
    assert_report(report, "group-buy")
    assert report["group_buy"]["groups_formed"] == 20 and report["group_buy"]["sale_reserved"] == 10

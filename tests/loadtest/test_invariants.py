"""The flash-sale invariant checker on order records built here: each violation is caught, and the
CLI's exit status (``check-orders``) follows the checker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.cli import exit_status
from loadtest.invariants import (
    OrderRecord,
    SaleParams,
    check_client_agrees,
    check_replays,
    check_sale,
    orders_from_json,
    sale_counts,
)

ROOT = Path(__file__).resolve().parents[2]


def orders(*spec: tuple[str, str]) -> list[OrderRecord]:
    """Records from (user, key) pairs, one unit each."""
    return [OrderRecord(order_id=f"r{i}", user_id=u, key=k) for i, (u, k) in enumerate(spec)]


def failed(verdicts: dict[str, dict[str, object]]) -> set[str]:
    return {name for name, v in verdicts.items() if not v["ok"]}


def test_a_correct_sale_passes_every_check() -> None:
    records = orders(("u1", "a"), ("u2", "b"), ("u3", "c"))
    verdicts = check_sale(records, SaleParams(quantity=3, per_user_limit=1, eligible_demand=10))
    assert failed(verdicts) == set()
    assert exit_status({"invariants": verdicts, "slos": []}) == 0


def test_undersold_when_demand_exceeds_quantity_is_caught() -> None:
    records = orders(("u1", "a"), ("u2", "b"))
    assert failed(check_sale(records, SaleParams(3, 1, 10))) == {"sold_equals_min_quantity_demand"}


def test_demand_below_quantity_means_everyone_served() -> None:
    records = orders(("u1", "a"), ("u2", "b"))
    assert (
        failed(check_sale(records, SaleParams(quantity=100, per_user_limit=1, eligible_demand=2)))
        == set()
    )


def test_oversell_is_caught() -> None:
    records = orders(("u1", "a"), ("u2", "b"), ("u3", "c"), ("u4", "d"))
    verdicts = check_sale(records, SaleParams(3, 1, 10))
    assert "nothing_oversold" in failed(verdicts)
    assert sale_counts(records, SaleParams(3, 1, 10))["oversold"] == 1
    assert exit_status({"invariants": verdicts, "slos": []}) == 1


def test_duplicate_key_is_caught() -> None:
    records = orders(("u1", "a"), ("u1", "a"), ("u2", "b"))
    verdicts = check_sale(records, SaleParams(quantity=10, per_user_limit=5, eligible_demand=2))
    assert "no_duplicates" in failed(verdicts)
    assert sale_counts(records, SaleParams(10, 5, 2))["duplicates"] == 1


def test_per_user_limit_violation_is_caught() -> None:
    records = orders(("u1", "a"), ("u1", "b"), ("u2", "c"))
    verdicts = check_sale(records, SaleParams(quantity=3, per_user_limit=1, eligible_demand=3))
    assert "per_user_limit" in failed(verdicts)
    assert sale_counts(records, SaleParams(3, 1, 3))["per_user_violations"] == 1


def test_released_orders_do_not_count_as_sold() -> None:
    records = [*orders(("u1", "a"), ("u2", "b")), OrderRecord("r9", "u3", "c", status="expired")]
    counts = sale_counts(records, SaleParams(2, 1, 3))
    assert counts["sold"] == 2 and counts["oversold"] == 0


def test_retry_outcome_mismatch_is_caught() -> None:
    assert check_replays({"k1": "reserved"}, [("k1", "reserved"), ("k1", "reserved")])["ok"]
    assert not check_replays({"k1": "reserved"}, [("k1", "reserved"), ("k1", "sold_out")])["ok"]


def test_clients_and_orders_must_agree() -> None:
    assert check_client_agrees(client_reserved=5, server_sold=5, unknown=0)["ok"]
    assert check_client_agrees(client_reserved=5, server_sold=6, unknown=1)["ok"]
    assert not check_client_agrees(client_reserved=5, server_sold=7, unknown=1)["ok"]
    assert not check_client_agrees(client_reserved=5, server_sold=4, unknown=0)["ok"]


def test_orders_json_as_the_server_writes_them() -> None:
    body = {
        "orders": [
            {
                "id": "s.r1",
                "sale_id": "s.s1",
                "user_id": "v_1",
                "key": "k",
                "quantity": 1,
                "status": "paid",
            },
            {
                "id": "s.r2",
                "sale_id": "s.s2",
                "user_id": "v_2",
                "key": "k",
                "quantity": 1,
                "status": "reserved",
            },
        ]
    }
    records = orders_from_json(body, sale_id="s.s1")
    assert records == [OrderRecord("s.r1", "v_1", "k", 1, "paid", "s.s1")]


def _records_json(spec: list[tuple[str, str]]) -> dict[str, object]:
    return {
        "orders": [
            {"id": f"r{i}", "user_id": u, "key": k, "quantity": 1, "status": "reserved"}
            for i, (u, k) in enumerate(spec)
        ]
    }


@pytest.mark.parametrize(
    ("spec", "quantity", "limit", "demand", "status"),
    [
        ([("u1", "a"), ("u2", "b")], 2, 1, 5, 0),  # correct
        ([("u1", "a"), ("u2", "b"), ("u3", "c")], 2, 1, 5, 1),  # oversold
        ([("u1", "a"), ("u1", "a")], 5, 5, 2, 1),  # duplicate key
        ([("u1", "a"), ("u1", "b")], 2, 1, 2, 1),  # per-user limit broken
    ],
)
def test_cli_exit_status_follows_the_checker(
    tmp_path: Path, spec: list[tuple[str, str]], quantity: int, limit: int, demand: int, status: int
) -> None:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(_records_json(spec)))
    out = tmp_path / "verdicts.json"
    argv = [
        sys.executable,
        "-m",
        "loadtest",
        "check-orders",
        str(path),
        "--quantity",
        str(quantity),
    ]
    argv += ["--per-user-limit", str(limit), "--demand", str(demand), "--json", str(out)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == status, proc.stderr
    verdicts = json.loads(out.read_text())["invariants"]
    assert all(v["ok"] for v in verdicts.values()) == (status == 0)

"""Giveaway proofs bound to their giveaway: every tampering (42-style cases, tests/lottery_tampering.py)
fails ``python -m server.verify_lottery`` and the load tester's independent verifier."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from loadtest.lottery_proof import verify_proof
from server.verify_lottery import ALGORITHM, commitment_of, verify
from tests.lottery_tampering import tampered

ROOT = Path(__file__).resolve().parents[2]


async def drawn_proof(shop: Any, prize: str, fans: list[str]) -> tuple[dict[str, Any], str]:
    """A real giveaway: created, entered, drawn; returns (proof, commitment seen at creation)."""
    status, body = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/lotteries", shop.host_token,
        prize=prize, winners=3, duration_s=60,
    )  # fmt: skip
    assert status == 201, body
    lottery = body["lottery"]
    for token in fans:
        assert (await shop.call("POST", f"/api/lotteries/{lottery['id']}/enter", token))[0] == 200
    status, _ = await shop.call("POST", f"/api/lotteries/{lottery['id']}/draw", shop.host_token)
    assert status == 200
    status, proof = await shop.call("GET", f"/api/lotteries/{lottery['id']}/proof")
    assert status == 200
    return proof, lottery["commitment"]


def run_cli(proofs: list[dict[str, Any]], tmp_path: Path) -> list[int]:
    codes = []
    for i, proof in enumerate(proofs):
        path = tmp_path / f"proof{i}.json"
        path.write_text(json.dumps(proof))
        result = subprocess.run(
            [sys.executable, "-m", "server.verify_lottery", str(path)],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode in (0, 1), result.stderr  # never a crash (2 or a traceback)
        assert "Traceback" not in result.stderr
        codes.append(result.returncode)
    return codes


async def test_commitment_binds_the_terms_published_at_creation(shop: Any) -> None:
    fans = [await shop.buyer(f"Fan{i}") for i in range(6)]
    proof, seen = await drawn_proof(shop, "Cap", fans)
    assert proof["algorithm"] == ALGORITHM == "liveshop-lottery-v2"
    assert proof["commitment"] == seen == commitment_of(
        proof["lottery_id"], proof["show_id"], proof["prize"], proof["eligibility"],
        proof["keyword"], proof["winners_count"], proof["seed"],
    )  # fmt: skip
    assert verify(proof) == [] and verify_proof(proof, seen) == []


async def test_every_tampered_proof_fails_both_verifiers(shop: Any, tmp_path: Path) -> None:
    fans = [await shop.buyer(f"Fan{i}") for i in range(8)]
    proof, seen = await drawn_proof(shop, "Sneakers", fans)
    other, _ = await drawn_proof(shop, "Socks", fans)
    cases = list(tampered(proof, other))
    assert len(cases) >= 42
    for name, bad in cases:
        assert verify(bad), f"server verifier accepted: {name}"
        assert verify_proof(bad), f"load tester accepted: {name}"
        assert verify_proof(bad, seen), f"load tester (with the commitment seen) accepted: {name}"
    codes = run_cli([proof, *(bad for _, bad in cases)], tmp_path)
    assert codes[0] == 0
    accepted = [name for (name, _), code in zip(cases, codes[1:], strict=True) if code != 1]
    assert accepted == []
    # Not even a malformed document crashes the verifiers.
    for junk in (None, [], "proof", 3, {"proof": 3}):
        assert verify(junk) and verify_proof(junk)

"""The tester's own giveaway verifier agrees with the documented algorithm and catches tampering."""

from __future__ import annotations

import secrets

from loadtest.lottery_proof import ALGORITHM, entrants_digest, verify_proof, winners_of
from loadtest.scenarios.lottery import judge_draw
from server.verify_lottery import commitment_of, draw_winners, entrants_hash_of


def make_proof(entrants: list[str], count: int = 3) -> dict[str, object]:
    """A proof built with the server's reference functions (the tester must agree with them)."""
    seed = secrets.token_bytes(32).hex()
    ordered = sorted(set(entrants))
    digest = entrants_hash_of(ordered)
    terms = ("show1.l1", "show1", "Prize", "present", None, count)
    return {
        "algorithm": ALGORITHM,
        "lottery_id": terms[0],
        "show_id": terms[1],
        "prize": terms[2],
        "eligibility": terms[3],
        "keyword": terms[4],
        "winners_count": count,
        "seed": seed,
        "commitment": commitment_of(*terms, seed),
        "entrants": ordered,
        "entrants_hash": digest,
        "winners": draw_winners(seed, digest, ordered, count),
    }


def test_independent_implementation_matches_the_server_reference() -> None:
    for n in (1, 2, 7, 100, 1000):
        proof = make_proof([f"v_{i:04d}" for i in range(n)], count=5)
        assert entrants_digest(proof["entrants"]) == proof["entrants_hash"]  # type: ignore[arg-type]
        assert (
            winners_of(proof["seed"], proof["entrants_hash"], proof["entrants"], 5)
            == proof["winners"]
        )  # type: ignore[arg-type]
        assert verify_proof(proof, proof["commitment"]) == []  # type: ignore[arg-type]


def test_tampered_proofs_are_caught() -> None:
    proof = make_proof([f"v_{i}" for i in range(50)])
    swapped = {**proof, "winners": [*proof["winners"][:-1], "v_not_a_winner"]}  # type: ignore[index]
    assert any("winners differ" in p for p in verify_proof(swapped))
    reseeded = {**proof, "seed": secrets.token_bytes(32).hex()}
    assert any("commitment" in p for p in verify_proof(reseeded))
    relabelled = {**proof, "lottery_id": "show1.l2"}
    assert any("commitment" in p for p in verify_proof(relabelled))
    shrunk = {**proof, "entrants": proof["entrants"][1:]}  # type: ignore[index]
    assert any("entrants_hash" in p for p in verify_proof(shrunk))
    assert any("opened" in p for p in verify_proof(proof, commitment_seen="0" * 64))


def test_draw_judgement_checks_the_crowds_view() -> None:
    proof = make_proof(["a", "b", "c"], count=2)
    ok = judge_draw(proof, proof["commitment"], {"a", "b", "c"}, 2)  # type: ignore[arg-type]
    assert all(v["ok"] for v in ok.values())
    missing = judge_draw(proof, proof["commitment"], {"a", "b", "c", "d"}, 2)  # type: ignore[arg-type]
    assert not missing["lottery_everyone_entered_is_listed"]["ok"]
    stranger = judge_draw(proof, proof["commitment"], {"a", "b"}, 2)  # type: ignore[arg-type]
    assert not stranger["lottery_no_unknown_entrants"]["ok"]

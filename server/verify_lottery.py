"""Verify a liveshop giveaway draw: ``python -m server.verify_lottery PROOF.json``.

Standard library only, so anyone can run it on a downloaded proof
(``GET /api/lotteries/{id}/proof``). Every field below is required with exactly its type; it
checks, and exits 1 naming each failure:

1. ``commitment == sha256(terms)``, where ``terms`` is the compact, key-sorted JSON (UTF-8, no
   ASCII escaping) of ``{"algorithm", "eligibility", "keyword", "lottery_id", "prize", "seed",
   "show_id", "winners_count"}`` — the commitment published when the giveaway opened binds the
   secret seed *and* this giveaway's terms, so a proof cannot be relabelled as another
   giveaway's, nor its prize, eligibility or number of winners changed afterwards;
2. the entrant list is sorted and has no duplicates, and ``sha256(compact JSON of it) ==
   entrants_hash`` — the list is the one frozen at the draw;
3. recomputing the winners from (seed, entrants_hash, entrants) gives exactly the published
   winners.

Winner derivation ("liveshop-lottery-v2"; v1 committed to the seed alone): a partial
Fisher–Yates shuffle of the sorted entrant list. Step ``i`` picks ``j = i + uniform(n - i)``;
``uniform(m)`` takes ``HMAC-SHA256(key=seed, msg=entrants_hash_bytes || counter as 8-byte
big-endian)`` as a 256-bit integer, rejecting values at or above the largest multiple of ``m``
(no modulo bias), with the counter starting at 0 and increasing on every HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
from typing import Any

ALGORITHM = "liveshop-lottery-v2"
ELIGIBILITY = ("present", "keyword", "buyers")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_LOTTERY_ID = re.compile(r"^([A-Za-z0-9_-]{1,64})\.l[0-9]{1,12}\Z")


def terms_of(
    lottery_id: str,
    show_id: str,
    prize: str,
    eligibility: str,
    keyword: str | None,
    winners_count: int,
    seed_hex: str,
) -> bytes:
    """The committed terms: compact key-sorted JSON, UTF-8."""
    terms = {
        "algorithm": ALGORITHM,
        "eligibility": eligibility,
        "keyword": keyword,
        "lottery_id": lottery_id,
        "prize": prize,
        "seed": seed_hex,
        "show_id": show_id,
        "winners_count": winners_count,
    }
    return json.dumps(terms, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def commitment_of(
    lottery_id: str,
    show_id: str,
    prize: str,
    eligibility: str,
    keyword: str | None,
    winners_count: int,
    seed_hex: str,
) -> str:
    """sha256 of the committed terms, hex: published when the giveaway opens."""
    return hashlib.sha256(
        terms_of(lottery_id, show_id, prize, eligibility, keyword, winners_count, seed_hex)
    ).hexdigest()


def canonical_entrants(entrants: list[str]) -> bytes:
    return json.dumps(entrants, separators=(",", ":"), ensure_ascii=False).encode()


def entrants_hash_of(entrants: list[str]) -> str:
    return hashlib.sha256(canonical_entrants(entrants)).hexdigest()


def draw_winners(seed_hex: str, entrants_hash: str, entrants: list[str], count: int) -> list[str]:
    """The winners of sorted ``entrants`` for this seed: deterministic and unbiased."""
    key = bytes.fromhex(seed_hex)
    message = bytes.fromhex(entrants_hash)
    pool = list(entrants)
    counter = 0

    def uniform(m: int) -> int:
        nonlocal counter
        limit = (1 << 256) - ((1 << 256) % m)
        while True:
            digest = hmac.new(key, message + counter.to_bytes(8, "big"), hashlib.sha256).digest()
            counter += 1
            value = int.from_bytes(digest, "big")
            if value < limit:
                return value % m

    picks = min(count, len(pool))
    for i in range(picks):
        j = i + uniform(len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:picks]


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _shape_problems(proof: Any) -> list[str]:
    """Every required field present with exactly its type (no coercion: "3" is not 3)."""
    if not isinstance(proof, dict):
        return ["proof must be a JSON object"]
    problems = []
    for name in ("algorithm", "lottery_id", "show_id", "prize", "eligibility"):
        if not isinstance(proof.get(name), str):
            problems.append(f"{name} must be a string")
    if "keyword" not in proof or not (
        proof["keyword"] is None or isinstance(proof["keyword"], str)
    ):
        problems.append("keyword must be present: a string, or null")
    count = proof.get("winners_count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        problems.append("winners_count must be a positive integer")
    for name in ("seed", "commitment", "entrants_hash"):
        value = proof.get(name)
        if not isinstance(value, str) or not _HEX64.match(value):
            problems.append(f"{name} must be 64 lowercase hex digits")
    for name in ("entrants", "winners"):
        if not _is_str_list(proof.get(name)):
            problems.append(f"{name} must be a list of strings")
    return problems


def verify(proof: Any) -> list[str]:
    """Problems found in the proof (empty when it verifies)."""
    problems = _shape_problems(proof)
    if problems:
        return problems
    if proof["algorithm"] != ALGORITHM:
        return [f"unknown algorithm {proof['algorithm']!r} (this verifier checks {ALGORITHM})"]
    match = _LOTTERY_ID.match(proof["lottery_id"])
    if match is None or match.group(1) != proof["show_id"]:
        problems.append("lottery_id is not a giveaway of show_id")
    if proof["eligibility"] not in ELIGIBILITY:
        problems.append(f"eligibility must be one of {', '.join(ELIGIBILITY)}")
    if (proof["keyword"] is not None) != (proof["eligibility"] == "keyword"):
        problems.append("keyword must be set exactly for keyword giveaways")
    seed, entrants, entrants_hash = proof["seed"], proof["entrants"], proof["entrants_hash"]
    expected_commitment = commitment_of(
        proof["lottery_id"], proof["show_id"], proof["prize"], proof["eligibility"],
        proof["keyword"], proof["winners_count"], seed,
    )  # fmt: skip
    if expected_commitment != proof["commitment"]:
        problems.append(
            "the commitment published at creation does not match this seed and these terms "
            "(lottery, show, prize, eligibility, winners count)"
        )
    if entrants != sorted(set(entrants)):
        problems.append("entrant list is not sorted and unique")
    if entrants_hash_of(entrants) != entrants_hash:
        problems.append("entrant list does not match the published entrants hash")
    if not problems:
        expected = draw_winners(seed, entrants_hash, entrants, proof["winners_count"])
        if expected != proof["winners"]:
            problems.append(
                f"winners do not match: expected {expected}, proof says {proof['winners']}"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m server.verify_lottery PROOF.json  (use - for stdin)", file=sys.stderr
        )
        return 2
    try:
        text = sys.stdin.read() if args[0] == "-" else open(args[0], encoding="utf-8").read()
        proof = json.loads(text)
    except (OSError, ValueError) as exc:
        print(f"cannot read proof: {exc}", file=sys.stderr)
        return 2
    if isinstance(proof, dict) and isinstance(proof.get("proof"), dict):
        proof = proof["proof"]
    problems = verify(proof)
    if problems:
        for problem in problems:
            print(f"FAIL: {problem}")
        return 1
    print(
        f"OK: giveaway {proof['lottery_id']} of show {proof['show_id']} ({proof['prize']!r}): "
        f"{len(proof['entrants'])} entrants, winners {proof['winners']} reproduced from the "
        "revealed seed and the terms committed to at creation"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

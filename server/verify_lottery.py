"""Verify a liveshop giveaway draw: ``python -m server.verify_lottery PROOF.json``.

Standard library only, so anyone can run it on a downloaded proof
(``GET /api/lotteries/{id}/proof``). It checks, and exits 1 naming the first failure:

1. ``sha256(seed) == commitment`` — the seed is the one committed to when the giveaway opened;
2. the entrant list is sorted and has no duplicates, and ``sha256(canonical JSON of it) ==
   entrants_hash`` — the list is the one frozen at the draw;
3. recomputing the winners from (seed, entrants_hash, entrants) gives exactly the published
   winners.

Winner derivation ("liveshop-lottery-v1"): a partial Fisher–Yates shuffle of the sorted entrant
list. Step ``i`` picks ``j = i + uniform(n - i)``; ``uniform(m)`` takes
``HMAC-SHA256(key=seed, msg=entrants_hash_bytes || counter as 8-byte big-endian)`` as a 256-bit
integer, rejecting values at or above the largest multiple of ``m`` (no modulo bias), with the
counter starting at 0 and increasing on every HMAC. Distinct entrants make distinct winners.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from typing import Any

ALGORITHM = "liveshop-lottery-v1"


def commitment_of(seed_hex: str) -> str:
    """sha256 of the seed bytes, hex."""
    return hashlib.sha256(bytes.fromhex(seed_hex)).hexdigest()


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


def verify(proof: dict[str, Any]) -> list[str]:
    """Problems found in the proof (empty when it verifies)."""
    problems = []
    try:
        seed, commitment = str(proof["seed"]), str(proof["commitment"])
        entrants = [str(e) for e in proof["entrants"]]
        entrants_hash, winners = str(proof["entrants_hash"]), [str(w) for w in proof["winners"]]
        count = int(proof["winners_count"])
    except (KeyError, TypeError, ValueError) as exc:
        return [f"proof is missing or has a malformed field: {exc}"]
    if proof.get("algorithm", ALGORITHM) != ALGORITHM:
        problems.append(f"unknown algorithm {proof.get('algorithm')!r}")
    try:
        if commitment_of(seed) != commitment:
            problems.append("seed does not match the commitment published at creation")
    except ValueError:
        problems.append("seed is not hex")
    if entrants != sorted(set(entrants)):
        problems.append("entrant list is not sorted and unique")
    if entrants_hash_of(entrants) != entrants_hash:
        problems.append("entrant list does not match the published entrants hash")
    if not problems:
        expected = draw_winners(seed, entrants_hash, entrants, count)
        if expected != winners:
            problems.append(f"winners do not match: expected {expected}, proof says {winners}")
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
    if isinstance(proof, dict) and "proof" in proof:
        proof = proof["proof"]
    problems = verify(proof)
    if problems:
        for problem in problems:
            print(f"FAIL: {problem}")
        return 1
    print(
        f"OK: {len(proof['entrants'])} entrants, winners {proof['winners']} reproduced from the revealed seed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

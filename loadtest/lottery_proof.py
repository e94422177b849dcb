"""An independent verifier of liveshop giveaway proofs (algorithm ``liveshop-lottery-v1``).

Written from the documented algorithm, not imported from the server, so that a server bug
cannot hide behind a shared implementation:

1. ``sha256(seed) == commitment`` (the commitment was published when the giveaway opened);
2. the entrant list is sorted and unique and ``sha256(compact JSON of it) == entrants_hash``;
3. the winners are a partial Fisher–Yates shuffle of the entrants where step ``i`` swaps in
   ``j = i + uniform(n - i)``, ``uniform(m)`` reading ``HMAC-SHA256(seed, entrants_hash_bytes ||
   counter_be64)`` as a 256-bit integer and rejecting values >= the largest multiple of ``m``;
   the counter starts at 0 and increases on every HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

ALGORITHM = "liveshop-lottery-v1"
_SPACE = 1 << 256


def entrants_digest(entrants: list[str]) -> str:
    """sha256 of the entrant list as compact JSON (no spaces, UTF-8 kept), hex."""
    return hashlib.sha256(
        json.dumps(entrants, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


class _Uniform:
    """Unbiased integers from an HMAC-SHA256 counter stream."""

    def __init__(self, seed: bytes, message: bytes) -> None:
        self.seed, self.message, self.counter = seed, message, 0

    def below(self, m: int) -> int:
        bound = _SPACE - _SPACE % m
        while True:
            block = hmac.digest(self.seed, self.message + self.counter.to_bytes(8, "big"), "sha256")
            self.counter += 1
            value = int.from_bytes(block, "big")
            if value < bound:
                return value % m


def winners_of(seed_hex: str, entrants_hash: str, entrants: list[str], count: int) -> list[str]:
    """Recompute the winners from the revealed seed."""
    stream = _Uniform(bytes.fromhex(seed_hex), bytes.fromhex(entrants_hash))
    pool = list(entrants)
    picks = min(count, len(pool))
    for i in range(picks):
        j = i + stream.below(len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:picks]


def verify_proof(proof: dict[str, Any], commitment_seen: str | None = None) -> list[str]:
    """Problems with a proof (empty list: it verifies). ``commitment_seen`` is the commitment the
    tester read when the giveaway opened: the proof must carry the same one."""
    try:
        seed = str(proof["seed"])
        entrants = [str(e) for e in proof["entrants"]]
        digest = str(proof["entrants_hash"])
        winners = [str(w) for w in proof["winners"]]
        count = int(proof["winners_count"])
        commitment = str(proof["commitment"])
    except (KeyError, TypeError, ValueError) as exc:
        return [f"malformed proof: {exc!r}"]
    problems = []
    if proof.get("algorithm") != ALGORITHM:
        problems.append(f"unexpected algorithm {proof.get('algorithm')!r}")
    if commitment_seen is not None and commitment_seen != commitment:
        problems.append("the proof's commitment is not the one published when the giveaway opened")
    try:
        if hashlib.sha256(bytes.fromhex(seed)).hexdigest() != commitment:
            problems.append("sha256(seed) != commitment")
    except ValueError:
        return [*problems, "seed is not hex"]
    if entrants != sorted(set(entrants)):
        problems.append("entrants are not sorted and unique")
    if entrants_digest(entrants) != digest:
        problems.append("entrants_hash does not match the entrant list")
    if not problems:
        expected = winners_of(seed, digest, entrants, count)
        if expected != winners:
            problems.append(
                f"winners differ: recomputed {expected[:5]}…, proof says {winners[:5]}…"
            )
    return problems

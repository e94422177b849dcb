"""An independent verifier of liveshop giveaway proofs (algorithm ``liveshop-lottery-v2``).

Written from the documented algorithm, not imported from the server, so that a server bug
cannot hide behind a shared implementation:

0. every field is present with exactly its type: ``algorithm``, ``lottery_id``, ``show_id``,
   ``prize``, ``eligibility`` strings, ``keyword`` string or null, ``winners_count`` a positive
   integer (not 3.5, not "3"), ``seed``/``commitment``/``entrants_hash`` 64 lowercase hex digits,
   ``entrants``/``winners`` lists of strings;
1. ``commitment == sha256(JSON with sorted keys, no spaces, UTF-8 of {algorithm, eligibility,
   keyword, lottery_id, prize, seed, show_id, winners_count})`` — published when the giveaway
   opened, it ties the seed to this giveaway's terms;
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
import string
from typing import Any

ALGORITHM = "liveshop-lottery-v2"
_SPACE = 1 << 256
_TEXT_FIELDS = ("algorithm", "lottery_id", "show_id", "prize", "eligibility")
_HEX_FIELDS = ("seed", "commitment", "entrants_hash")
_LIST_FIELDS = ("entrants", "winners")


def entrants_digest(entrants: list[str]) -> str:
    """sha256 of the entrant list as compact JSON (no spaces, UTF-8 kept), hex."""
    return hashlib.sha256(
        json.dumps(entrants, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def terms_digest(proof: dict[str, Any]) -> str:
    """What the commitment must be for the proof's seed and terms."""
    terms = {name: proof[name] for name in ("algorithm", "eligibility", "keyword", "lottery_id",
                                            "prize", "seed", "show_id", "winners_count")}  # fmt: skip
    canonical = json.dumps(terms, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


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


def _typed(proof: Any) -> list[str]:
    if type(proof) is not dict:
        return ["malformed proof: not an object"]
    bad = [name for name in _TEXT_FIELDS if type(proof.get(name)) is not str]
    if "keyword" not in proof or (
        proof["keyword"] is not None and type(proof["keyword"]) is not str
    ):
        bad.append("keyword")
    if type(proof.get("winners_count")) is not int or proof["winners_count"] < 1:
        bad.append("winners_count")
    for name in _HEX_FIELDS:
        value = proof.get(name)
        if (
            type(value) is not str
            or len(value) != 64
            or not set(value) <= set(string.hexdigits[:16])
        ):
            bad.append(name)
    for name in _LIST_FIELDS:
        value = proof.get(name)
        if type(value) is not list or any(type(item) is not str for item in value):
            bad.append(name)
    return [f"malformed proof: {name} missing or of the wrong type" for name in bad]


def verify_proof(proof: Any, commitment_seen: str | None = None) -> list[str]:
    """Problems with a proof (empty list: it verifies). ``commitment_seen`` is the commitment the
    tester read when the giveaway opened: the proof must carry the same one."""
    problems = _typed(proof)
    if problems:
        return problems
    if proof["algorithm"] != ALGORITHM:
        return [f"unexpected algorithm {proof['algorithm']!r}"]
    if not proof["lottery_id"].startswith(proof["show_id"] + ".l"):
        problems.append("lottery_id does not belong to show_id")
    if commitment_seen is not None and commitment_seen != proof["commitment"]:
        problems.append("the proof's commitment is not the one published when the giveaway opened")
    if terms_digest(proof) != proof["commitment"]:
        problems.append("commitment != sha256(terms with seed): seed or terms were changed")
    entrants, digest = proof["entrants"], proof["entrants_hash"]
    if entrants != sorted(set(entrants)):
        problems.append("entrants are not sorted and unique")
    if entrants_digest(entrants) != digest:
        problems.append("entrants_hash does not match the entrant list")
    if not problems:
        expected = winners_of(proof["seed"], digest, entrants, proof["winners_count"])
        if expected != proof["winners"]:
            problems.append(
                f"winners differ: recomputed {expected[:5]}…, proof says {proof['winners'][:5]}…"
            )
    return problems

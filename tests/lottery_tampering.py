"""Tampered giveaway proofs, shared by the tests of all three verifiers (server CLI, load tester,
browser page): each case is a named change to a real proof that must fail verification."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Iterator
from typing import Any

Proof = dict[str, Any]


def _set(name: str, value: Any) -> Callable[[Proof], None]:
    def change(proof: Proof) -> None:
        proof[name] = value

    return change


def _drop(name: str) -> Callable[[Proof], None]:
    def change(proof: Proof) -> None:
        del proof[name]

    return change


def _swap_winner(proof: Proof) -> None:
    outsider = next(e for e in proof["entrants"] if e not in proof["winners"])
    proof["winners"] = [outsider, *proof["winners"][1:]]


def tampered(proof: Proof, other: Proof) -> Iterator[tuple[str, Proof]]:
    """(name, tampered copy) for every case; ``other`` is another drawn giveaway's proof."""
    show = proof["show_id"]
    cases: dict[str, Callable[[Proof], None]] = {
        "lottery_id changed": _set("lottery_id", f"{show}.l999"),
        "lottery_id of another show": _set("lottery_id", "elsewhere.l1"),
        "lottery_id deleted": _drop("lottery_id"),
        "lottery_id a number": _set("lottery_id", 1),
        "show_id changed": _set("show_id", "elsewhere"),
        "show_id deleted": _drop("show_id"),
        "prize changed": _set("prize", proof["prize"] + " (gold)"),
        "prize deleted": _drop("prize"),
        "prize null": _set("prize", None),
        "eligibility changed": _set("eligibility", "buyers"),
        "eligibility unknown": _set("eligibility", "anyone"),
        "eligibility deleted": _drop("eligibility"),
        "keyword added": _set("keyword", "free"),
        "keyword deleted": _drop("keyword"),
        "algorithm deleted": _drop("algorithm"),
        "algorithm v1": _set("algorithm", "liveshop-lottery-v1"),
        "algorithm unknown": _set("algorithm", "something-else"),
        "winners_count 3.5": _set("winners_count", 3.5),
        'winners_count "3"': _set("winners_count", "3"),
        "winners_count true": _set("winners_count", True),
        "winners_count one more": _set("winners_count", proof["winners_count"] + 1),
        "winners_count one less": _set("winners_count", proof["winners_count"] - 1),
        "winners_count 0": _set("winners_count", 0),
        "winners_count deleted": _drop("winners_count"),
        "seed changed": _set("seed", secrets.token_hex(32)),
        "seed uppercase": _set("seed", proof["seed"].upper()),
        "seed not hex": _set("seed", "zz" * 32),
        "seed deleted": _drop("seed"),
        "commitment changed": _set("commitment", secrets.token_hex(32)),
        "commitment deleted": _drop("commitment"),
        "entrants reordered": _set("entrants", list(reversed(proof["entrants"]))),
        "entrant duplicated": _set("entrants", sorted([*proof["entrants"], proof["entrants"][0]])),
        "entrant removed": _set("entrants", proof["entrants"][1:]),
        "entrant added": _set("entrants", sorted([*proof["entrants"], "g_zzzzzzzzzzzz"])),
        "entrants a string": _set("entrants", ",".join(proof["entrants"])),
        "entrant a number": _set("entrants", [*proof["entrants"][:-1], 7]),
        "entrants_hash changed": _set("entrants_hash", secrets.token_hex(32)),
        "entrants_hash deleted": _drop("entrants_hash"),
        "winner swapped": _swap_winner,
        "winners reordered": _set("winners", list(reversed(proof["winners"]))),
        "winner dropped": _set("winners", proof["winners"][:-1]),
        "winners deleted": _drop("winners"),
    }
    for name, change in cases.items():
        bad = copy.deepcopy(proof)
        change(bad)
        yield name, bad
    # Another giveaway's genuine proof relabelled as this one (all its own checks would pass).
    relabelled = copy.deepcopy(other)
    for name in ("lottery_id", "show_id", "prize", "eligibility", "keyword", "winners_count"):
        relabelled[name] = proof[name]
    yield "another giveaway's proof relabelled", relabelled
    yield (
        "another giveaway's proof with this id",
        {**copy.deepcopy(other), "lottery_id": proof["lottery_id"]},
    )

"""The in-browser giveaway verifier (js/verify.js) agrees with server/verify_lottery.py."""

from __future__ import annotations

import secrets
from typing import Any

from server.verify_lottery import ALGORITHM, commitment_of, draw_winners, entrants_hash_of

VERIFY_JS = """async (proof) => {
  const mod = await import('/static/js/verify.js');
  const checks = await mod.verifyProof(proof);
  return checks.map((c) => c.ok);
}"""


def make_proof(entrants: int, winners: int) -> dict[str, Any]:
    seed = secrets.token_hex(32)
    people = sorted(f"g_{secrets.token_hex(6)}" for _ in range(entrants))
    entrants_hash = entrants_hash_of(people)
    return {
        "algorithm": ALGORITHM,
        "lottery_id": "x.l1",
        "prize": "Prize",
        "winners_count": winners,
        "commitment": commitment_of(seed),
        "seed": seed,
        "entrants": people,
        "entrants_hash": entrants_hash,
        "winners": draw_winners(seed, entrants_hash, people, winners),
    }


def test_browser_verifier_matches_python_and_rejects_tampering(
    web_server: Any, new_page: Any
) -> None:
    page = new_page()
    page.goto(web_server.url + "/verify/none.l1")  # any page of the origin (a secure context)
    page.locator("#verdict").wait_for()
    for entrants, winners in ((1, 1), (7, 3), (250, 10), (3, 5)):
        proof = make_proof(entrants, winners)
        assert page.evaluate(VERIFY_JS, proof) == [True] * 5, (entrants, winners)

    proof = make_proof(50, 3)
    swapped = dict(proof, winners=[proof["entrants"][0], *proof["winners"][1:]])
    if swapped["winners"] != proof["winners"]:
        assert page.evaluate(VERIFY_JS, swapped)[4] is False
    assert page.evaluate(VERIFY_JS, dict(proof, seed=secrets.token_hex(32)))[1] is False
    assert page.evaluate(VERIFY_JS, dict(proof, entrants=proof["entrants"][:-1]))[3] is False


def test_ice_servers_from_link_headers(web_server: Any, new_page: Any) -> None:
    """STUN/TURN servers handed out in WHIP/WHEP Link headers (RFC 9725 §4.6) are understood."""
    page = new_page()
    page.goto(web_server.url + "/")
    header = (
        '<stun:stun.example.net:3478>; rel="ice-server", '
        '<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="u1"; credential="p,1"'
    )
    servers = page.evaluate(
        "async (h) => (await import('/static/js/webrtc.js')).parseIceLinks(h)", header
    )
    assert servers == [
        {"urls": "stun:stun.example.net:3478"},
        {"urls": "turn:turn.example.net:3478?transport=udp", "username": "u1", "credential": "p,1"},
    ]
    # This server hands out none on loopback: the OPTIONS probe answers an empty list.
    assert (
        page.evaluate(
            "async (u) => (await import('/static/js/webrtc.js')).discoverIceServers(u)",
            web_server.url + "/whep/none",
        )
        == []
    )

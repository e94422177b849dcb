"""The in-browser giveaway verifier (js/verify.js) agrees with server/verify_lottery.py."""

from __future__ import annotations

import secrets
from typing import Any

from server.verify_lottery import ALGORITHM, commitment_of, draw_winners, entrants_hash_of, verify
from tests.lottery_tampering import tampered

VERIFY_JS = """async (proof) => {
  const mod = await import('/static/js/verify.js');
  const checks = await mod.verifyProof(proof);
  return checks.map((c) => c.ok);
}"""
VERIFY_JS_MANY = """async (proofs) => {
  const mod = await import('/static/js/verify.js');
  const out = [];
  for (const proof of proofs) out.push((await mod.verifyProof(proof)).map((c) => c.ok));
  return out;
}"""


def make_proof(entrants: int, winners: int, lottery_id: str = "x.l1") -> dict[str, Any]:
    seed = secrets.token_hex(32)
    people = sorted(f"g_{secrets.token_hex(6)}" for _ in range(entrants))
    entrants_hash = entrants_hash_of(people)
    # A prize with non-ASCII text and JSON escapes: the committed terms' bytes must agree.
    terms = (lottery_id, "x", 'Prize "Ünïcode" \\ 🎁\n', "present", None, winners)
    return {
        "algorithm": ALGORITHM,
        "lottery_id": terms[0],
        "show_id": terms[1],
        "prize": terms[2],
        "eligibility": terms[3],
        "keyword": terms[4],
        "winners_count": winners,
        "commitment": commitment_of(*terms, seed),
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
        assert verify(proof) == []
        assert page.evaluate(VERIFY_JS, proof) == [True] * 5, (entrants, winners)
    keyword = make_proof(5, 2)
    keyword.update(eligibility="keyword", keyword="sneakers")
    keyword["commitment"] = commitment_of("x.l1", "x", keyword["prize"], "keyword", "sneakers", 2,
                                          keyword["seed"])  # fmt: skip
    assert verify(keyword) == [] and page.evaluate(VERIFY_JS, keyword) == [True] * 5

    # The same tampering cases as the server and load-tester verifiers: all rejected here too.
    proof, other = make_proof(50, 3), make_proof(40, 3, lottery_id="x.l2")
    cases = list(tampered(proof, other))
    results = page.evaluate(VERIFY_JS_MANY, [bad for _, bad in cases])
    accepted = [name for (name, _), oks in zip(cases, results, strict=True) if all(oks)]
    assert accepted == []
    assert all(verify(bad) for _, bad in cases)


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

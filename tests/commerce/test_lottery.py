"""Giveaways: commitment, draw, independent verification, tampering rejected, eligibility, roles."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from server.appkeys import REDIS
from server.auth import verify as verify_token
from server.redis import keys as base
from server.verify_lottery import commitment_of, draw_winners, entrants_hash_of, verify

ROOT = Path(__file__).resolve().parents[2]


def run_verifier(proof: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    return subprocess.run(
        [sys.executable, "-m", "server.verify_lottery", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_draw_is_verifiable_and_tampering_fails(
    shop: Any, events: Any, tmp_path: Path
) -> None:
    status, body = await shop.call(
        "POST",
        f"/api/shows/{shop.show_id}/lotteries",
        shop.host_token,
        prize="Cap",
        winners=3,
        duration_s=60,
    )
    assert status == 201
    lottery = body["lottery"]
    created = await events.of("lottery.created")
    assert (
        created[0]["lottery"]["commitment"] == lottery["commitment"]
        and "seed" not in created[0]["lottery"]
    )
    status, body = await shop.call("GET", f"/api/lotteries/{lottery['id']}/proof")
    assert status == 409 and body["error"]["code"] == "not_drawn"
    for i in range(8):
        token = await shop.buyer(f"Fan{i}")
        status, _ = await shop.call("POST", f"/api/lotteries/{lottery['id']}/enter", token)
        assert status == 200
        await shop.call(
            "POST", f"/api/lotteries/{lottery['id']}/enter", token
        )  # twice: still one entry
    viewer = await shop.buyer()
    assert (await shop.call("POST", f"/api/lotteries/{lottery['id']}/draw", viewer))[0] == 403
    status, body = await shop.call("POST", f"/api/lotteries/{lottery['id']}/draw", shop.host_token)
    assert status == 200 and body["lottery"]["status"] == "drawn"
    status, proof = await shop.call("GET", f"/api/lotteries/{lottery['id']}/proof")
    assert status == 200
    assert (
        proof["commitment"]
        == lottery["commitment"]
        == commitment_of(lottery["id"], shop.show_id, "Cap", "present", None, 3, proof["seed"])
    )
    assert (
        len(proof["entrants"]) == 8
        and len(proof["winners"]) == 3
        and len(set(proof["winners"])) == 3
    )
    assert set(proof["winners"]) <= set(proof["entrants"])
    drawn = await events.of("lottery.drawn")
    assert [w["user_id"] for w in drawn[0]["winners"]] == proof["winners"]
    assert drawn[0]["proof_url"].endswith(f"/api/lotteries/{lottery['id']}/proof")

    ok = run_verifier(proof, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    swapped = [e for e in proof["entrants"] if e not in proof["winners"]][0]
    tampered_entrants = {**proof, "entrants": sorted(proof["entrants"][1:] + ["g_zzzzzzzzzzzz"])}
    tampered_seed = {**proof, "seed": "00" * 32}
    tampered_winners = {**proof, "winners": [swapped, *proof["winners"][1:]]}
    for bad in (tampered_entrants, tampered_seed, tampered_winners):
        result = run_verifier(bad, tmp_path)
        assert result.returncode == 1 and "FAIL" in result.stdout
    # Dropping a winner and re-hashing the list consistently still fails: the winners no longer follow.
    dropped = sorted(e for e in proof["entrants"] if e != proof["winners"][0])
    rehashed = {**proof, "entrants": dropped, "entrants_hash": entrants_hash_of(dropped)}
    assert any("winners do not match" in p for p in verify(rehashed))


def test_draw_winners_is_deterministic_and_unique() -> None:
    entrants = sorted(f"u{i:03d}" for i in range(50))
    digest = entrants_hash_of(entrants)
    seed = "ab" * 32
    first = draw_winners(seed, digest, entrants, 10)
    assert first == draw_winners(seed, digest, entrants, 10) and len(set(first)) == 10
    assert draw_winners("cd" * 32, digest, entrants, 10) != first
    assert sorted(draw_winners(seed, digest, entrants[:2], 5)) == entrants[:2]
    assert draw_winners(seed, entrants_hash_of([]), [], 3) == []


async def test_keyword_and_buyer_eligibility(shop: Any) -> None:
    status, body = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/lotteries", shop.host_token,
        prize="Socks", winners=5, duration_s=60, eligibility="keyword", keyword="Sneakers",
    )  # fmt: skip
    assert status == 201
    lottery = body["lottery"]
    redis = shop.client.app[REDIS]
    now = int(time.time() * 1000)
    for uid, text, role in (("v1", "I want the SNEAKERS!", "viewer"), ("v2", "hello", "viewer"),
                            ("v3", "sneakers pls", "viewer"), ("m1", "sneakers", "moderator")):  # fmt: skip
        fields = {"uid": uid, "name": uid.upper(), "role": role, "text": text, "ts": now}
        await redis.xadd(base.chat_stream(shop.show_id), fields)
    viewer = await shop.buyer()
    status, body = await shop.call("POST", f"/api/lotteries/{lottery['id']}/enter", viewer)
    assert status == 409 and body["error"]["code"] == "automatic_entry"
    status, body = await shop.call("POST", f"/api/lotteries/{lottery['id']}/draw", shop.host_token)
    assert status == 200
    proof = (await shop.call("GET", f"/api/lotteries/{lottery['id']}/proof"))[1]
    assert proof["entrants"] == ["v1", "v3"] and sorted(proof["winners"]) == ["v1", "v3"]
    assert verify(proof) == []

    sale = await shop.sale(quantity=2, per_user_limit=1)
    buyer = await shop.buyer("Buyer")
    rid = (await shop.buy(sale["id"], buyer, "k"))["reservation_id"]
    assert (await shop.call("POST", f"/api/orders/{rid}/pay", buyer, key="p"))[0] == 200
    status, body = await shop.call(
        "POST",
        f"/api/shows/{shop.show_id}/lotteries",
        shop.host_token,
        prize="Cap",
        winners=1,
        eligibility="buyers",
    )
    lottery = body["lottery"]
    await shop.call("POST", f"/api/lotteries/{lottery['id']}/draw", shop.host_token)
    proof = (await shop.call("GET", f"/api/lotteries/{lottery['id']}/proof"))[1]
    assert proof["entrants"] == [verify_token("test-secret", buyer).user_id] == proof["winners"]


async def test_bad_lottery_input(shop: Any) -> None:
    path = f"/api/shows/{shop.show_id}/lotteries"
    for bad in (
        {"winners": 0},
        {"eligibility": "everyone"},
        {"eligibility": "keyword"},
        {"prize": ""},
        {"duration_s": -1},
    ):
        status, body = await shop.call("POST", path, shop.host_token, **{"prize": "X", **bad})
        assert status == 400, bad
    viewer = await shop.buyer()
    assert (await shop.call("POST", path, viewer, prize="X"))[0] == 403
    status, body = await shop.call("GET", f"/api/shows/{shop.show_id}/lotteries")
    assert body["lotteries"] == []


async def test_winner_names_are_stored_with_the_draw(shop: Any) -> None:
    status, body = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/lotteries", shop.host_token,
        prize="Mug", winners=2, duration_s=60,
    )  # fmt: skip
    assert status == 201 and body["lottery"]["winner_names"] is None
    lottery_id = body["lottery"]["id"]
    tokens = {name: await shop.buyer(name) for name in ("Ana", "Bo")}
    for token in tokens.values():
        assert (await shop.call("POST", f"/api/lotteries/{lottery_id}/enter", token))[0] == 200
    ids = {verify_token("test-secret", t).user_id: name for name, t in tokens.items()}
    await shop.call("POST", f"/api/lotteries/{lottery_id}/draw", shop.host_token)
    # After the draw (e.g. a studio reload) the names come with the public data, not only the event.
    lottery = (await shop.call("GET", f"/api/lotteries/{lottery_id}"))[1]["lottery"]
    assert sorted(lottery["winners"]) == sorted(ids)
    assert lottery["winner_names"] == [ids[w] for w in lottery["winners"]]
    listed = (await shop.call("GET", f"/api/shows/{shop.show_id}/lotteries"))[1]["lotteries"]
    assert listed[-1]["winner_names"] == lottery["winner_names"]
    proof = (await shop.call("GET", f"/api/lotteries/{lottery_id}/proof"))[1]
    assert proof["winner_names"] == lottery["winner_names"] and verify(proof) == []

    # Buyers giveaways take the name from the buyer's order.
    sale = await shop.sale(quantity=2, per_user_limit=1)
    buyer = await shop.buyer("Cleo")
    rid = (await shop.buy(sale["id"], buyer, "k"))["reservation_id"]
    assert (await shop.call("POST", f"/api/orders/{rid}/pay", buyer, key="p"))[0] == 200
    body = (await shop.call(
        "POST", f"/api/shows/{shop.show_id}/lotteries", shop.host_token,
        prize="Cap", winners=1, eligibility="buyers",
    ))[1]  # fmt: skip
    lottery_id = body["lottery"]["id"]
    await shop.call("POST", f"/api/lotteries/{lottery_id}/draw", shop.host_token)
    lottery = (await shop.call("GET", f"/api/lotteries/{lottery_id}"))[1]["lottery"]
    assert lottery["winner_names"] == ["Cleo"]


async def test_present_giveaway_draws_among_viewers_never_staff(shop: Any) -> None:
    """Presence decides a ``present`` giveaway's entrants: viewers connected now. The host and
    the moderators are watching too, but presence leaves staff out, so they can never win."""
    from server.realtime.presence import present_users
    from tests.realtime.conftest import open_ws

    app = shop.client.app
    status, minted = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/tokens", shop.host_token, role="moderator", name="Mo"
    )
    assert status == 201, minted
    tokens = [shop.host_token, minted["token"], *[await shop.buyer(f"Fan{i}") for i in range(3)]]
    sockets = [
        await open_ws(shop.client, f"/ws/{shop.show_id}?token={t}", "liveshop.json") for t in tokens
    ]
    fans = {verify_token("test-secret", t, shop.show_id).user_id for t in tokens[2:]}
    deadline = time.monotonic() + 10
    while {uid for uid, _ in await present_users(app, shop.show_id)} != fans:
        assert time.monotonic() < deadline, await present_users(app, shop.show_id)
        await sockets[0].pump(0.2)  # presence reports every second
    status, body = await shop.call(
        "POST", f"/api/shows/{shop.show_id}/lotteries", shop.host_token,
        prize="Hat", winners=5, duration_s=60,
    )  # fmt: skip
    assert status == 201
    lottery_id = body["lottery"]["id"]
    status, body = await shop.call("POST", f"/api/lotteries/{lottery_id}/draw", shop.host_token)
    assert status == 200 and set(body["lottery"]["winners"]) == fans
    status, proof = await shop.call("GET", f"/api/lotteries/{lottery_id}/proof")
    assert status == 200 and set(proof["entrants"]) == fans
    for ws in sockets:
        await ws.close()

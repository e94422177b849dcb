"""Giveaways (lotteries), provably fair.

At creation the server draws a secret 32-byte seed and publishes a commitment to it *and* to the
giveaway's terms (id, show, prize, eligibility, winners count: see server.verify_lottery), so
a proof can be checked against the giveaway it claims to be.
At the draw it freezes the sorted entrant list, publishes its hash, derives the winners with
:func:`server.verify_lottery.draw_winners` and reveals the seed, so anyone can re-run the draw
(``python -m server.verify_lottery PROOF.json``). Eligibility: ``present`` (viewers present
when the window closes, plus anyone who entered), ``keyword`` (sent the keyword in chat during
the window) or ``buyers`` (paid in this show).
"""

from __future__ import annotations

import importlib
import json
import logging
import secrets
import time
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from ..appkeys import REDIS, SETTINGS
from ..auth import STAFF, Claims, authenticate
from ..errors import bad_request, conflict, forbidden, not_found, read_json
from ..protocol import VIEWERS, Command, Message, register
from ..redis import keys as base
from ..redis.broker import publish
from ..shows import get_show
from ..verify_lottery import ALGORITHM, commitment_of, draw_winners, entrants_hash_of
from . import fields
from . import keys as ck
from .activity import touch
from .fields import COMMERCE_COMMANDS

log = logging.getLogger("liveshop.lottery")

ELIGIBILITY = ("present", "keyword", "buyers")
PUBLIC = ("id", "show_id", "prize", "winners_count", "eligibility", "keyword", "commitment", "opens_at",
          "closes_at", "status", "entrants_count", "entrants_hash", "winners", "winner_names", "drawn_at")  # fmt: skip


def public(lottery: dict[str, Any]) -> dict[str, Any]:
    out = {name: lottery.get(name) for name in PUBLIC}
    out["proof_url"] = f"/api/lotteries/{lottery['id']}/proof"
    return out


async def load(app: web.Application, lottery_id: str) -> dict[str, Any]:
    show_id = ck.show_of(lottery_id, "l")
    raw = await app[REDIS].hget(ck.lotteries(show_id), lottery_id)
    if raw is None:
        raise not_found("lottery_not_found", f"no lottery {lottery_id!r}")
    return json.loads(raw)


async def create_lottery(
    app: web.Application, show_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    prize = fields.text(body, "prize", 120)
    winners = fields.integer(body, "winners", 1, 1000, default=1)
    duration = fields.integer(body, "duration_s", 1, 24 * 3600, default=60)
    eligibility = body.get("eligibility", "present")
    if eligibility not in ELIGIBILITY:
        raise bad_request(
            "bad_field", f"eligibility must be one of {', '.join(ELIGIBILITY)}", field="eligibility"
        )
    keyword = fields.text(body, "keyword", 40) if eligibility == "keyword" else None
    redis = app[REDIS]
    seed = secrets.token_bytes(32)
    lottery_id = f"{show_id}.l{await redis.hincrby(ck.seq(show_id), 'lottery', 1)}"
    now = int(time.time() * 1000)
    commitment = commitment_of(
        lottery_id, show_id, prize, eligibility, keyword, winners, seed.hex()
    )
    lottery = {
        "id": lottery_id,
        "algorithm": ALGORITHM,
        "show_id": show_id,
        "prize": prize,
        "winners_count": winners,
        "eligibility": eligibility,
        "keyword": keyword,
        "commitment": commitment,
        "seed": seed.hex(),
        "opens_at": now,
        "closes_at": now + duration * 1000,
        "status": "open",
    }
    await redis.hset(ck.lotteries(show_id), lottery_id, json.dumps(lottery))
    await touch(app, show_id, lottery["closes_at"] + 60_000)
    await publish(app, show_id, {"type": "lottery.created", "lottery": public(lottery)})
    return lottery


async def enter(app: web.Application, claims: Claims, lottery_id: Any) -> dict[str, Any]:
    """Explicit entry for ``present`` giveaways ("I'm here"); the others are automatic."""
    if not isinstance(lottery_id, str):
        raise bad_request("bad_field", "lottery_id is required", field="lottery_id")
    show_id = ck.show_of(lottery_id, "l")
    if show_id != claims.show_id:
        raise forbidden("token is for another show")
    lottery = await load(app, lottery_id)
    if claims.is_staff:
        raise forbidden("staff cannot enter their own giveaway")
    if lottery["status"] != "open" or time.time() * 1000 >= lottery["closes_at"]:
        raise conflict("lottery_closed", "the entry window is closed")
    if lottery["eligibility"] != "present":
        raise conflict(
            "automatic_entry", f"entry is automatic for {lottery['eligibility']} giveaways"
        )
    await app[REDIS].hset(ck.lottery_entries(show_id, lottery_id), claims.user_id, claims.name)
    return {"lottery_id": lottery_id, "entered": True}


async def _present_users(app: web.Application, show_id: str) -> dict[str, str]:
    try:
        presence = importlib.import_module("server.realtime.presence")
        users = await presence.present_users(app, show_id)
        return {str(uid): str(name) for uid, name in users}
    except (ImportError, AttributeError):
        return {}


async def _keyword_senders(
    app: web.Application, show_id: str, lottery: dict[str, Any]
) -> dict[str, str]:
    """Viewers whose chat during the window contains the keyword (case-insensitive)."""
    keyword = str(lottery["keyword"]).casefold()
    start, end = lottery["opens_at"], lottery["closes_at"]
    found: dict[str, str] = {}
    entries = await app[REDIS].xrange(
        base.chat_stream(show_id), min=f"{max(0, start - 5000)}-0", max="+"
    )
    for _, data in entries:
        ts = int(data.get("ts") or 0)
        if (
            start <= ts <= end
            and data.get("role", "viewer") == "viewer"
            and keyword in data.get("text", "").casefold()
        ):
            found[data["uid"]] = data.get("name", data["uid"])
    return found


async def _buyer_names(app: web.Application, show_id: str) -> dict[str, str]:
    """Users who paid in this show → the name on their order (their id if none is found)."""
    redis = app[REDIS]
    people = {uid: uid for uid in await redis.smembers(ck.funnel(show_id, "paid"))}
    for raw in (await redis.hgetall(ck.reservations(show_id))).values():
        order = json.loads(raw)
        uid, name = order.get("user_id"), order.get("name")
        if uid in people and name:
            people[uid] = str(name)
    return people


async def entrants_of(app: web.Application, lottery: dict[str, Any]) -> dict[str, str]:
    show_id = lottery["show_id"]
    redis = app[REDIS]
    if lottery["eligibility"] == "keyword":
        people = await _keyword_senders(app, show_id, lottery)
    elif lottery["eligibility"] == "buyers":
        people = await _buyer_names(app, show_id)
    else:
        people = await _present_users(app, show_id)
        people.update(await redis.hgetall(ck.lottery_entries(show_id, lottery["id"])))
    host_id = await redis.hget(base.meta(show_id), "host_id")
    people.pop(host_id or "", None)
    return people


async def draw(app: web.Application, lottery_id: str) -> dict[str, Any]:
    """Freeze the entrants, derive the winners, reveal the seed and announce them (once)."""
    show_id = ck.show_of(lottery_id, "l")
    redis = app[REDIS]
    lottery = await load(app, lottery_id)
    if lottery["status"] == "drawn":
        return lottery
    if not await redis.set(ck.lottery_lock(show_id, lottery_id), "1", nx=True, ex=60):
        raise conflict("draw_in_progress", "this giveaway is being drawn")
    people = await entrants_of(app, lottery)
    entrants = sorted(people)
    entrants_hash = entrants_hash_of(entrants)
    winners = draw_winners(lottery["seed"], entrants_hash, entrants, lottery["winners_count"])
    lottery.update(
        status="drawn",
        entrants=entrants,
        entrants_count=len(entrants),
        entrants_hash=entrants_hash,
        winners=winners,
        winner_names=[people[w] for w in winners],
        drawn_at=int(time.time() * 1000),
    )
    await redis.hset(ck.lotteries(show_id), lottery_id, json.dumps(lottery))
    await publish(
        app,
        show_id,
        {
            "type": "lottery.drawn",
            "lottery_id": lottery_id,
            "prize": lottery["prize"],
            "winners": [
                {"user_id": w, "name": n}
                for w, n in zip(winners, lottery["winner_names"], strict=True)
            ],
            "entrants_count": len(entrants),
            "entrants_hash": entrants_hash,
            "seed": lottery["seed"],
            "commitment": lottery["commitment"],
            "proof_url": f"{app[SETTINGS].base_url}/api/lotteries/{lottery_id}/proof",
        },
    )
    return lottery


def proof(lottery: dict[str, Any]) -> dict[str, Any]:
    return {
        # Giveaways created before v2 committed to the seed alone and say so.
        "algorithm": lottery.get("algorithm", "liveshop-lottery-v1"),
        "lottery_id": lottery["id"],
        "show_id": lottery["show_id"],
        "prize": lottery["prize"],
        "eligibility": lottery["eligibility"],
        "keyword": lottery.get("keyword"),
        "winners_count": lottery["winners_count"],
        "commitment": lottery["commitment"],
        "seed": lottery["seed"],
        "entrants": lottery["entrants"],
        "entrants_hash": lottery["entrants_hash"],
        "winners": lottery["winners"],
        # Display names, same order as ``winners``; not part of the verified data.
        "winner_names": lottery.get("winner_names", lottery["winners"]),
    }


async def resync_events(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    """After a pub/sub gap (server.ws.hub): the giveaways still open, as their ``lottery.created``."""
    events = []
    for raw in (await app[REDIS].hgetall(ck.lotteries(show_id))).values():
        lottery = json.loads(raw)
        if lottery["status"] == "open":
            events.append({"type": "lottery.created", "lottery": public(lottery)})
    return events


async def draw_due(app: web.Application, show_id: str) -> None:
    """Draw every open giveaway of the show whose window has closed (leader timer)."""
    now = time.time() * 1000
    for raw in (await app[REDIS].hgetall(ck.lotteries(show_id))).values():
        lottery = json.loads(raw)
        if lottery["status"] == "open" and now >= lottery["closes_at"]:
            try:
                await draw(app, lottery["id"])
            except Exception:
                log.exception("auto draw of %s failed", lottery["id"])


async def handle_create(request: web.Request) -> web.Response:
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    await authenticate(request, show_id, STAFF)
    lottery = await create_lottery(request.app, show_id, await read_json(request))
    return web.json_response({"lottery": public(lottery)}, status=201)


async def handle_list(request: web.Request) -> web.Response:
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    raw = await request.app[REDIS].hgetall(ck.lotteries(show_id))
    items = sorted((public(json.loads(v)) for v in raw.values()), key=lambda lot: lot["opens_at"])
    return web.json_response({"lotteries": items})


async def handle_get(request: web.Request) -> web.Response:
    return web.json_response(
        {"lottery": public(await load(request.app, request.match_info["lottery_id"]))}
    )


async def handle_enter(request: web.Request) -> web.Response:
    lottery_id = request.match_info["lottery_id"]
    claims = await authenticate(request, ck.show_of(lottery_id, "l"))
    return web.json_response(await enter(request.app, claims, lottery_id))


async def handle_draw(request: web.Request) -> web.Response:
    lottery_id = request.match_info["lottery_id"]
    await authenticate(request, ck.show_of(lottery_id, "l"), STAFF)
    return web.json_response({"lottery": public(await draw(request.app, lottery_id))})


async def handle_proof(request: web.Request) -> web.Response:
    lottery = await load(request.app, request.match_info["lottery_id"])
    if lottery["status"] != "drawn":
        raise conflict(
            "not_drawn", "the giveaway has not been drawn yet; the seed stays secret until then"
        )
    return web.json_response(proof(lottery))


class LotteryEnter(Message, tag="lottery.enter"):
    """Enter a `present` giveaway ("I'm here"; the others are automatic). Replied with `{lottery_id, entered: true}`."""

    lottery_id: Annotated[str, Meta(description="the giveaway (`SHOW.l1`)")]


async def ws_enter(app: web.Application, claims: Claims, body: LotteryEnter) -> dict[str, Any]:
    return await enter(app, claims, body.lottery_id)


ENTER = Command(
    LotteryEnter, ws_enter, roles=VIEWERS, refusal="staff cannot enter their own giveaway"
)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/shows/{show_id}/lotteries", handle_create)
    app.router.add_get("/api/shows/{show_id}/lotteries", handle_list)
    app.router.add_get("/api/lotteries/{lottery_id}", handle_get)
    app.router.add_post("/api/lotteries/{lottery_id}/enter", handle_enter)
    app.router.add_post("/api/lotteries/{lottery_id}/draw", handle_draw)
    app.router.add_get("/api/lotteries/{lottery_id}/proof", handle_proof)
    register(app, COMMERCE_COMMANDS, [ENTER])

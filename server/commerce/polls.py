"""Polls ("which should we show next?"): one vote per user, tallies in Redis counters.

A vote moves a counter in ``poll.lua``; the votes arriving on a node while a call is in flight
are decided together by the next call (a micro-batch, as for flash-sale buys). No per-vote event
goes to the viewers. The show's timers (:mod:`.ticker`) broadcast ``poll.tally`` at most every 250 ms
while the tallies change, so 100,000 voters cost each viewer four small events a second.
At the close (time up, or staff early) the tallies are frozen into ``final`` once and kept.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from .. import insight
from ..appkeys import REDIS
from ..auth import Claims, authenticate
from ..errors import bad_request, not_found, read_json
from ..protocol import STAFF, Command, Message, register
from ..redis import keys as base
from ..redis.broker import publish
from . import fields
from . import keys as ck
from .activity import touch
from .fields import COMMERCE_COMMANDS
from .interactive import (
    create_route,
    decide,
    list_route,
    now_ms,
    own_show,
    run,
    same_show,
    staff_only,
)
from .scripts import POLL

TALLY_EVERY_MS = 250
FIELDS = ("def", "n", "changeable", "start", "end", "status", "total", "final")


def poll_keys(show_id: str) -> list[str]:
    return [
        ck.polls(show_id),
        ck.poll_votes(show_id),
        ck.seq(show_id),
        ck.interactive_live(show_id),
        ck.funnel(show_id, "voted"),
        base.counters(show_id),
    ]


async def _options(app: web.Application, show_id: str, raw: Any) -> list[dict[str, Any]]:
    """2–6 options, each a label or a product id of this show (labelled with its title)."""
    if not isinstance(raw, list) or not 2 <= len(raw) <= 6:
        raise bad_request("bad_field", "options must be a list of 2 to 6 items", field="options")
    products = ck.products(show_id)
    out: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, str) or not item.strip() or len(item) > 80:
            raise bad_request(
                "bad_field", "each option is a label of 1-80 characters", field="options"
            )
        item = item.strip()
        if ck.ID_RE.match(item) and ck.ID_RE.match(item).group(2) == "p":  # type: ignore[union-attr]
            product = await app[REDIS].hget(products, item)
            if product is None:
                raise not_found("product_not_found", f"no product {item!r} in this show")
            out.append({"label": json.loads(product)["title"], "product_id": item})
        else:
            out.append({"label": item, "product_id": None})
    return out


async def create_poll(
    app: web.Application, claims: Claims, show_id: str, body: dict[str, Any], now: int | None = None
) -> dict[str, Any]:
    staff_only(claims, "create a poll")
    same_show(claims, show_id)
    question = fields.text(body, "question", 200)
    options = await _options(app, show_id, body.get("options"))
    duration = fields.integer(body, "duration_s", 5, 3600, default=60)
    changeable = body.get("changeable", False)
    if not isinstance(changeable, bool):
        raise bad_request("bad_field", "changeable must be true or false", field="changeable")
    now = now_ms(app) if now is None else now
    definition = json.dumps({"question": question, "options": options})
    result = await run(
        app, POLL, poll_keys(show_id), "create", show_id, definition, len(options),
        "1" if changeable else "0", now, duration * 1000,
    )  # fmt: skip
    await touch(app, show_id, now + duration * 1000 + 60_000)
    poll = await get_poll(app, result["id"], now)
    await publish(app, show_id, {"type": "poll.created", **event_fields(poll)})
    return poll


def _view(
    poll_id: str, raw: list[str | None], tallies: list[str | None], now: int
) -> dict[str, Any]:
    f = dict(zip(FIELDS, raw, strict=True))
    definition = json.loads(f["def"] or "{}")
    closed = f["status"] == "closed"
    counts = json.loads(f["final"]) if closed and f["final"] else [int(t or 0) for t in tallies]
    return {
        "id": poll_id,
        "show_id": ck.show_of(poll_id, "q"),
        "question": definition["question"],
        "options": definition["options"],
        "changeable": f["changeable"] == "1",
        "starts_at": int(f["start"] or 0),
        "ends_at": int(f["end"] or 0),
        "status": "closed" if closed or now >= int(f["end"] or 0) else "open",
        "tallies": counts,
        "total": int(f["total"] or 0),
        "final": closed,
    }


async def get_poll(app: web.Application, poll_id: str, now: int | None = None) -> dict[str, Any]:
    """The poll with its live tallies (or the frozen ones once closed), or 404 ``poll_not_found``."""
    show_id = ck.show_of(poll_id, "q")
    redis = app[REDIS]
    raw = await redis.hmget(ck.polls(show_id), [f"{poll_id}:{name}" for name in FIELDS])
    if raw[0] is None:
        raise not_found("poll_not_found", f"no poll {poll_id!r}")
    n = int(raw[1] or 0)
    tallies = await redis.hmget(ck.polls(show_id), [f"{poll_id}:t:{i}" for i in range(n)])
    return _view(poll_id, raw, tallies, now_ms(app) if now is None else now)


async def list_polls(app: web.Application, show_id: str) -> list[dict[str, Any]]:
    count = int(await app[REDIS].hget(ck.seq(show_id), "poll") or 0)
    return [await get_poll(app, f"{show_id}.q{i}") for i in range(1, count + 1)]


def event_fields(poll: dict[str, Any]) -> dict[str, Any]:
    return {
        "poll_id": poll["id"],
        "question": poll["question"],
        "options": poll["options"],
        "tallies": poll["tallies"],
        "total": poll["total"],
        "ends_at": poll["ends_at"],
        "changeable": poll["changeable"],
    }


async def vote(
    app: web.Application, claims: Claims, poll_id: Any, option: Any, now: int | None = None
) -> dict[str, Any]:
    """One vote (any role of the show); the outcome is an answer, not an error."""
    show_id = own_show(claims, poll_id, "q", "poll_id")
    option = fields.integer({"option": option}, "option", 0, 5)
    item = (poll_id, claims.user_id, option)
    result = await decide(app, "poll", "votes", poll_keys(show_id), item, now)
    outcome = result["outcome"]
    if outcome == "unknown_poll":
        raise not_found("poll_not_found", f"no poll {poll_id!r}")
    if outcome == "bad_option":
        raise bad_request("bad_field", "no such option in this poll", field="option")
    await insight.action(app, show_id, "voted", claims.user_id)
    return {"outcome": outcome, "poll_id": poll_id, "option": result.get("option")}


async def close_poll(
    app: web.Application, poll_id: str, now: int | None = None, force: bool = True
) -> tuple[bool, dict[str, Any]]:
    """Freeze the results (``force``: now; else only once the end has passed). (closed now?, poll)."""
    show_id = ck.show_of(poll_id, "q")
    now = now_ms(app) if now is None else now
    result = await run(app, POLL, poll_keys(show_id), "close", poll_id, now, "1" if force else "0")
    if result["outcome"] == "unknown_poll":
        raise not_found("poll_not_found", f"no poll {poll_id!r}")
    poll = await get_poll(app, poll_id, now)
    if result["outcome"] == "closed":
        await publish(app, show_id, {"type": "poll.closed", **event_fields(poll)})
        return True, poll
    return False, poll


async def end_poll(app: web.Application, claims: Claims, poll_id: Any) -> dict[str, Any]:
    own_show(claims, poll_id, "q", "poll_id")
    staff_only(claims, "close a poll")
    _, poll = await close_poll(app, poll_id)
    return poll


async def tick(
    app: web.Application, show_id: str, poll_ids: list[str], memo: dict[str, Any], now: int
) -> None:
    """Close polls whose time is up; broadcast changed tallies at most every 250 ms."""
    for poll_id in poll_ids:
        poll = await get_poll(app, poll_id, now)
        if poll["status"] == "closed":
            await close_poll(app, poll_id, now, force=False)
            memo.pop(poll_id, None)
            continue
        last_at, last = memo.get(poll_id, (0, None))
        signature = (poll["tallies"], poll["total"])
        if signature != last and now - last_at >= TALLY_EVERY_MS:
            memo[poll_id] = (now, signature)
            event = {"type": "poll.tally", "poll_id": poll_id, "tallies": poll["tallies"]}
            await publish(
                app, show_id, {**event, "total": poll["total"], "ends_at": poll["ends_at"]}
            )


# -- HTTP and WebSocket --------------------------------------------------------------------


async def handle_get(request: web.Request) -> web.Response:
    return web.json_response({"poll": await get_poll(request.app, request.match_info["poll_id"])})


async def handle_vote(request: web.Request) -> web.Response:
    poll_id = request.match_info["poll_id"]
    claims = await authenticate(request, ck.show_of(poll_id, "q"))
    body = await read_json(request, 4096)
    return web.json_response(await vote(request.app, claims, poll_id, body.get("option")))


async def handle_close(request: web.Request) -> web.Response:
    poll_id = request.match_info["poll_id"]
    claims = await authenticate(request, ck.show_of(poll_id, "q"))
    return web.json_response({"poll": await end_poll(request.app, claims, poll_id)})


POLL_ID = Annotated[str, Meta(max_length=80, description="the poll")]


class PollCreate(Message, tag="poll.create"):
    """Staff: open a poll. Replied with `{poll}`; everyone receives `poll.created`."""

    question: Annotated[str, Meta(max_length=200, description="the question (trimmed, not empty)")]
    # The count (2..6) and each item are checked by create_poll, shared with HTTP, question first.
    options: Annotated[
        list[Any], Meta(description="2..6 option labels (1..80 chars) or product ids of the show")
    ]
    duration_s: Annotated[int, Meta(ge=5, le=3600, description="seconds until it closes")] = 60
    changeable: Annotated[
        bool, Meta(description="whether a vote may be changed until the close")
    ] = False


async def ws_create(app: web.Application, claims: Claims, body: PollCreate) -> dict[str, Any]:
    fields = {"question": body.question, "options": body.options, "duration_s": body.duration_s,
              "changeable": body.changeable}  # fmt: skip
    return {"poll": await create_poll(app, claims, claims.show_id, fields)}


class PollVote(Message, tag="poll.vote"):
    """Vote for one option. Replied with `{outcome, poll_id, option}`: `voted`, `changed`, `already_voted` (not changeable: `option` is your first vote), `closed`."""

    poll_id: POLL_ID
    option: Annotated[int, Meta(ge=0, le=5, description="index of the option, 0-based")]


async def ws_vote(app: web.Application, claims: Claims, body: PollVote) -> dict[str, Any]:
    return await vote(app, claims, body.poll_id, body.option)


class PollClose(Message, tag="poll.close"):
    """Staff: close a poll early. Replied with `{poll}` (results frozen)."""

    poll_id: POLL_ID


async def ws_close(app: web.Application, claims: Claims, body: PollClose) -> dict[str, Any]:
    return {"poll": await end_poll(app, claims, body.poll_id)}


COMMANDS = (
    Command(PollCreate, ws_create, roles=STAFF, refusal="role '{role}' may not create a poll"),
    Command(PollVote, ws_vote),
    Command(PollClose, ws_close, roles=STAFF, refusal="role '{role}' may not close a poll"),
)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/shows/{show_id}/polls", create_route(create_poll, "poll"))
    app.router.add_get("/api/shows/{show_id}/polls", list_route(list_polls, "polls"))
    app.router.add_get("/api/polls/{poll_id}", handle_get)
    app.router.add_post("/api/polls/{poll_id}/vote", handle_vote)
    app.router.add_post("/api/polls/{poll_id}/close", handle_close)
    register(app, COMMERCE_COMMANDS, COMMANDS)

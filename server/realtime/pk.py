"""PK battles: two live shows linked for a few minutes, each audience sees both hosts, and the
audiences compete (likes and paid GMV in the battle window) with a countdown and one winner.

Flow. Host A invites show B (``POST /api/shows/{A}/pk``): the answer, and a staff-only
``pk.invited`` event in B's studio, carry a signed invite (a JWT under a key derived from the
server secret, so it can never pass for an access token and a forged or altered one is 403).
B's host accepts (``POST /api/shows/{B}/pk/accept``) and the battle starts in both shows at once:
``pk.started``, then ``pk.score`` whenever points land, then exactly one ``pk.ended`` (win, draw,
or cancelled when a host ends it or leaves). Viewers open a second WHEP player for the opponent
(``/whep/{B}``) with a viewer token of B handed out by ``GET /api/shows/{A}/pk``: any node serves
it through the origin directory, so B's media reaches A's audience over the relay's pipes.

Keys and Redis Cluster. A PK spans two shows, i.e. two slots, so no script can touch both. The
shared state (sides, scores, window, result) is one hash ``{pk:ID}`` in the PK's own slot, and
each show holds a pointer ``{show:ID}:pk`` → PK id in its own slot. Every change is one
single-slot script (``pk.lua``), ordered so every intermediate state is harmless:

1. ``create`` the record (status ``starting``; exists already → the invite was used);
2. ``claim`` each show's pointer (the show must be live, the pointer free or pointing at a PK
   that ended / no longer exists — a pointer to a ``starting`` PK is a start in progress);
3. ``activate``: ``starting`` → ``active``, the window starts on the Redis clock, ``pk.started``
   is published to both channels from the script.

A failure at 2 releases what was claimed (compare-and-delete) and deletes the ``starting``
record, so nothing half-written stays and the invite can be retried. Points (``score``) and the
end (``finish``) are scripts on the PK hash alone, so the scores are one atomic counter set that
both shows read, and the transition to ``ended`` happens once: its caller alone publishes the
result. Pointers carry a TTL (battle + grace) as the last guard against a crashed node.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jwt
import msgspec
from aiohttp import web
from msgspec import Meta

from .. import auth
from ..appkeys import REDIS, SETTINGS
from ..auth import Claims
from ..errors import ApiError, bad_request, conflict
from ..logs import retry_failed
from ..openapi import operation, prop, read_body
from ..protocol import Event, register
from ..redis import broker, keys, lua
from ..shows import check_show_id, get_show
from .moderation import audit

log = logging.getLogger("liveshop.pk")

HOST_ONLY = frozenset({"host"})
ACTIVE = "liveshop:pk:active"  # sorted set PK id → ends_at (ms): the one global key, single-key use
KEEP_MS = 24 * 3600 * 1000  # an ended PK's record stays a day (GET, audits)
POINTER_GRACE_MS = 60_000
TICK_S = 0.25
LIVENESS_S = 1.0
INVITE_AUDIENCE = "liveshop:pk-invite"


def pk_key(pk_id: str) -> str:
    """The PK's record; its own hash tag, so all its scripts run in one Cluster slot."""
    return "{pk:" + pk_id + "}"


def pointer_key(show_id: str) -> str:
    """``{show:ID}:pk`` → the id of the show's current PK (in the show's slot)."""
    return keys.show_key(show_id, "pk")


# ----------------------------------------------------------------------------- events

Scores = Annotated[dict[str, int], Meta(description="show id → value, both sides")]


class PkInvitedEvent(Event, tag="pk.invited"):
    """Staff only, in the invited show: another show's host invites you to a PK battle."""

    invite: Annotated[
        str, Meta(description="the signed invite: POST it to `…/pk/accept` or `/decline`")
    ]
    pk_id: Annotated[str, Meta(description="the battle's id")]
    from_: Annotated[
        dict[str, Any],
        Meta(description="`from` on the wire: `{show_id, title, host_name}` of the inviting show"),
    ] = msgspec.field(name="from")
    to: Annotated[str, Meta(description="the invited show (this one)")]
    duration_s: Annotated[int, Meta(description="battle length, s")]
    expires_at: Annotated[int, Meta(description="the invite's expiry, ms since epoch")]


class PkDeclinedEvent(Event, tag="pk.declined"):
    """Staff only, in the inviting show: the invited host declined."""

    pk_id: Annotated[str, Meta(description="the battle's id")]
    by_show: Annotated[str, Meta(description="the show that declined")]


class PkScoreEvent(Event, tag="pk.score"):
    """Points changed (same bytes in both shows); `pk.started`/`pk.ended` (once) add the marked fields."""

    ALSO = ("pk.started", "pk.ended")

    pk_id: Annotated[str, Meta(description="the battle's id")]
    seq: Annotated[int, Meta(description="rises by one per score change")]
    scores: Scores
    likes: Scores
    gmv: Annotated[dict[str, int], Meta(description="paid amount per show, minor units")]
    ends_at: Annotated[int, Meta(description="end of the window, ms since epoch (Redis clock)")]
    remaining_ms: Annotated[int, Meta(description="ms left when sent (0 on `pk.ended`)")]
    sides: Annotated[
        list[dict[str, Any]] | None,
        Meta(description="`pk.started`: `[{show_id, title, host_name}]`, inviter first"),
    ] = None
    started_at: Annotated[int | None, Meta(description="`pk.started`: ms since epoch")] = None
    duration_ms: Annotated[int | None, Meta(description="`pk.started`: battle length")] = None
    now: Annotated[int | None, Meta(description="`pk.started`: the Redis clock when sent")] = None
    result: Annotated[str | None, Meta(description="`pk.ended`: `win`, `draw` or `cancelled`")] = (
        None
    )
    winner: Annotated[str | None, Meta(description="`pk.ended`: the winning show id, or null")] = (
        None
    )
    reason: Annotated[
        str | None, Meta(description="`pk.ended`: `time_up`, `ended_by_host` or `host_left`")
    ] = None
    ended_at: Annotated[int | None, Meta(description="`pk.ended`: ms since epoch")] = None


EVENTS: tuple[type[Event], ...] = (PkInvitedEvent, PkDeclinedEvent, PkScoreEvent)


# ----------------------------------------------------------------------------- invites


def _invite_key(secret: str) -> bytes:
    """A key of its own, derived from the server secret: an invite is never an access token."""
    return hmac.new(secret.encode(), b"liveshop pk invite v1", hashlib.sha256).digest()


def sign_invite(secret: str, claims: dict[str, Any], ttl_s: int) -> str:
    now = int(time.time())
    payload = {**claims, "aud": INVITE_AUDIENCE, "iat": now, "exp": now + ttl_s}
    return jwt.encode(payload, _invite_key(secret), algorithm="HS256")


def read_invite(secret: str, token: str) -> dict[str, Any]:
    """The invite's claims; 403 ``bad_invite`` (forged, altered, malformed), 410 ``invite_expired``."""
    try:
        claims = jwt.decode(
            token,
            _invite_key(secret),
            algorithms=["HS256"],
            audience=INVITE_AUDIENCE,
            options={"require": ["exp", "jti", "from", "to", "dur"]},
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(410, "invite_expired", "this PK invite has expired") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise ApiError(403, "bad_invite", "this PK invite is not valid") from None
    if not all(isinstance(claims.get(k), str) for k in ("jti", "from", "to")) or not isinstance(
        claims.get("dur"), int
    ):
        raise ApiError(403, "bad_invite", "this PK invite is not valid")
    return claims


# ----------------------------------------------------------------------------- the service

PK_LUA = lua.Script(Path(__file__).with_name("pk.lua"), libs=[broker.LUA_LIBRARY])


class PkService:
    """This node's view of PK battles: the script, and the ticker that ends battles on time."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

        self.ended: int = 0  # PK ends this node announced (tests, metrics)
        self.stopped = False  # a cancel swallowed inside a Redis call must not keep the loop alive

    async def run(self, op: str, key: str, *args: Any) -> Any:
        return await PK_LUA(self.app, [key], [op, *args])

    async def claim(self, show_id: str, pk_id: str, ttl_ms: int) -> tuple[str, str]:
        code, other = await PK_LUA(
            self.app,
            [pointer_key(show_id), keys.meta(show_id), keys.media_origin(show_id)],
            ["claim", pk_id, ttl_ms],
        )
        return str(code), str(other)

    async def release(self, show_id: str, pk_id: str) -> None:
        await PK_LUA(self.app, [pointer_key(show_id)], ["release", pk_id])

    async def record(self, pk_id: str) -> dict[str, str]:
        return dict(await self.app[REDIS].hgetall(pk_key(pk_id)))

    async def current(self, show_id: str) -> dict[str, str] | None:
        """The record of the show's PK (active, starting, or just ended), or None."""
        pk_id = await self.app[REDIS].get(pointer_key(show_id))
        if not pk_id:
            return None
        record = await self.record(pk_id)
        return record or None

    async def add_points(self, show_id: str, likes: int = 0, gmv: int = 0) -> None:
        """The like and payment paths' hook: count toward the show's PK, if it is in one.

        One GET when the show is not in a PK; the script ignores points outside the window,
        so a pointer read just before the end is harmless. Never raises into its caller.
        """
        try:
            pk_id = await self.app[REDIS].get(pointer_key(show_id))
            if pk_id:
                await self.run("score", pk_key(pk_id), show_id, int(likes), int(gmv))
        except Exception:
            retry_failed(log, "PK points for %s not counted", show_id)

    async def finish(self, pk_id: str, reason: str, by: Claims | None = None) -> dict[str, Any]:
        """End the PK (once); returns the ``pk.ended`` event, or {} if it had already ended."""
        raw = await self.run("finish", pk_key(pk_id), reason, by.user_id if by else "", KEEP_MS)
        record = await self.record(pk_id)
        if record.get("status") not in (None, "ended") and not raw:
            return {}  # still active: a time_up that came early by this node's clock
        await self._clean_up(pk_id, record)
        if not raw:
            return {}
        self.ended += 1
        event: dict[str, Any] = json.loads(raw)
        for show_id in (record["a"], record["b"]):
            await audit(
                self.app,
                by and dataclasses.replace(by, show_id=show_id) or _system(show_id),
                "pk.end",
                pk_id,
                reason=reason,
                result=event["result"],
                winner=event["winner"] or "",
            )
        return event

    async def _clean_up(self, pk_id: str, record: dict[str, str]) -> None:
        for show_id in (record.get("a"), record.get("b")):
            if show_id:
                await self.release(show_id, pk_id)
        await self.app[REDIS].zrem(ACTIVE, pk_id)

    # -- the ticker: time up, and a host who left --------------------------------------------

    async def loop(self) -> None:
        last_liveness = 0.0
        while not self.stopped:
            try:
                now_ms = int(time.time() * 1000)
                for pk_id in await self.app[REDIS].zrangebyscore(ACTIVE, "-inf", now_ms):
                    await self.finish(pk_id, "time_up")
                if time.monotonic() - last_liveness >= LIVENESS_S:
                    last_liveness = time.monotonic()
                    await self.check_liveness()
            except asyncio.CancelledError:
                raise
            except Exception:
                retry_failed(log, "PK ticker pass failed")
            await asyncio.sleep(TICK_S)

    async def check_liveness(self) -> None:
        """End every battle whose host left: the show ended, or its publisher is gone."""
        redis = self.app[REDIS]
        for pk_id in await redis.zrange(ACTIVE, 0, -1):
            record = await self.record(pk_id)
            status = record.get("status")
            if status is None or status == "ended":
                await self._clean_up(pk_id, record)
                continue
            if status != "active":
                continue
            for show_id in (record["a"], record["b"]):
                if not await show_is_live(self.app, show_id):
                    await self.finish(pk_id, "host_left", _system(show_id, "host left"))
                    break


PK = web.AppKey("pk", PkService)


def _system(show_id: str, name: str = "system") -> Claims:
    """The author of audit entries the server writes itself (time up, a host who left)."""
    return Claims(user_id="system", name=name, role="host", show_id=show_id, exp=0)


async def show_is_live(app: web.Application, show_id: str) -> bool:
    """Live: the show says so and its publisher holds the origin directory entry."""
    async with app[REDIS].pipeline(transaction=False) as pipe:
        pipe.hget(keys.meta(show_id), "status")
        pipe.exists(keys.media_origin(show_id))
        status, origin = await pipe.execute()
    return status == "live" and bool(origin)


async def add_points(app: web.Application, show_id: str, likes: int = 0, gmv: int = 0) -> None:
    """Hook for the like path (``likes``) and the paid-order path (``gmv``, minor units)."""
    service = app.get(PK)
    if service is not None:
        await service.add_points(show_id, likes, gmv)


def public_state(record: dict[str, str], for_show: str | None = None) -> dict[str, Any]:
    """A PK record for clients; ``opponent`` names the other side seen from ``for_show``."""
    now = int(time.time() * 1000)
    ends_at = int(record.get("ends_at") or 0)
    sides = []
    for side in ("a", "b"):
        sides.append(
            {
                "show_id": record[side],
                "title": record.get(f"title_{side}", ""),
                "host_name": record.get(f"host_{side}", ""),
                "score": int(record.get(f"score:{side}") or 0),
                "likes": int(record.get(f"likes:{side}") or 0),
                "gmv": int(record.get(f"gmv:{side}") or 0),
            }
        )
    state: dict[str, Any] = {
        "id": record["id"],
        "status": record["status"],
        "sides": sides,
        "scores": {s["show_id"]: s["score"] for s in sides},
        "seq": int(record.get("seq") or 0),
        "duration_ms": int(record["duration_ms"]),
        "started_at": int(record.get("started_at") or 0) or None,
        "ends_at": ends_at or None,
        "remaining_ms": max(0, ends_at - now) if record["status"] == "active" else 0,
        "like_points": int(record["like_points"]),
        "gmv_points": int(record["gmv_points"]),
        "result": record.get("result") or None,
        "winner": record.get("winner") or None,
        "reason": record.get("reason") or None,
    }
    if for_show in (record["a"], record["b"]):
        state["opponent"] = record["b"] if for_show == record["a"] else record["a"]
    return state


# ----------------------------------------------------------------------------- HTTP


@dataclass
class InviteBody:
    """Invite another live show to a PK battle."""

    show_id: str = prop("the opponent show's id", minLength=1, maxLength=64,
                        pattern=r"^[A-Za-z0-9_-]{1,64}$", code="bad_show_id")  # fmt: skip
    duration_s: int | None = prop("battle length in seconds (default --pk-duration-s)", None,
                                  minimum=5, maximum=3600)  # fmt: skip
    like_points: int | None = prop("points per like (default --pk-like-points)", None,
                                   minimum=0, maximum=1000)  # fmt: skip
    gmv_points: int | None = prop("points per 1.00 paid (default --pk-gmv-points)", None,
                                  minimum=0, maximum=1000)  # fmt: skip


@dataclass
class InviteOut:
    """The signed invite (also sent to the opponent's studio as ``pk.invited``)."""

    invite: str
    pk_id: str
    to: str
    expires_at: int = prop("ms since the epoch")


@dataclass
class InviteAnswer:
    """An invite received in the studio."""

    invite: str = prop("the invite from pk.invited", minLength=1, maxLength=4096)


@dataclass
class PkOut:
    """The show's PK (null when none), and for the caller a viewer token of the opponent."""

    pk: dict[str, Any] | None
    opponent_token: str | None = prop("a viewer token for the opponent show (WHEP)", None)


@dataclass
class Declined:
    """The invite was declined."""

    declined: str


async def _host(request: web.Request) -> tuple[str, Claims]:
    show_id = check_show_id(request.match_info["show_id"])
    await get_show(request.app, show_id)
    return show_id, await auth.authenticate(request, show_id, HOST_ONLY)


async def _assert_free(app: web.Application, show_id: str) -> None:
    if not await show_is_live(app, show_id):
        raise conflict("not_live", f"show {show_id!r} is not live", show_id=show_id)
    record = await app[PK].current(show_id)
    if record and record.get("status") in ("starting", "active"):
        raise conflict("already_in_pk", f"show {show_id!r} is already in a PK", show_id=show_id)


@operation("Invite another live show to a PK battle (host)", body=InviteBody,
           responses={201: InviteOut})  # fmt: skip
async def handle_invite(request: web.Request) -> web.Response:
    show_id, claims = await _host(request)
    body = await read_body(request, InviteBody)
    settings = request.app[SETTINGS]
    target = check_show_id(body["show_id"])
    if target == show_id:
        raise bad_request("bad_field", "a show cannot battle itself", field="show_id")
    opponent = await get_show(request.app, target)
    await _assert_free(request.app, show_id)
    await _assert_free(request.app, target)
    ours = await get_show(request.app, show_id)
    pk_id = secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")
    duration = body.get("duration_s") or settings.pk_duration_s
    like_points = body.get("like_points")
    gmv_points = body.get("gmv_points")
    claims_out = {
        "jti": pk_id,
        "from": show_id,
        "to": target,
        "dur": int(duration),
        "lp": settings.pk_like_points if like_points is None else like_points,
        "gp": settings.pk_gmv_points if gmv_points is None else gmv_points,
        "by": claims.user_id,
    }
    ttl = settings.pk_invite_ttl_s
    invite = sign_invite(settings.secret, claims_out, ttl)
    expires_at = (int(time.time()) + ttl) * 1000
    event = {
        "type": "pk.invited",
        "invite": invite,
        "pk_id": pk_id,
        "from": {"show_id": show_id, "title": ours["title"], "host_name": ours["host_name"]},
        "to": target,
        "duration_s": int(duration),
        "expires_at": expires_at,
    }
    await broker.publish(request.app, target, event, staff_only=True)
    await audit(request.app, claims, "pk.invite", target, pk_id=pk_id, duration_s=duration)
    body_out = {"invite": invite, "pk_id": pk_id, "to": opponent["id"], "expires_at": expires_at}
    return web.json_response(body_out, status=201)


@operation("Accept a PK invite: the battle starts in both shows (host of the invited show)",
           body=InviteAnswer, responses={200: PkOut})  # fmt: skip
async def handle_accept(request: web.Request) -> web.Response:
    show_id, claims = await _host(request)
    app = request.app
    invite = read_invite(app[SETTINGS].secret, (await read_body(request, InviteAnswer))["invite"])
    if invite["to"] != show_id:
        raise ApiError(403, "bad_invite", "this PK invite is for another show")
    first = await get_show(app, invite["from"])
    ours = await get_show(app, show_id)
    await _assert_free(app, first["id"])
    await _assert_free(app, show_id)
    record = await start(app, invite, first, ours, claims)
    return web.json_response({"pk": public_state(record, show_id), "opponent_token": None})


async def start(
    app: web.Application,
    invite: dict[str, Any],
    first: dict[str, Any],
    second: dict[str, Any],
    claims: Claims,
) -> dict[str, str]:
    """Create, claim both shows, activate (see the module docstring); nothing left on failure."""
    service = app[PK]
    pk_id = invite["jti"]
    key = pk_key(pk_id)
    a, b = first["id"], second["id"]
    duration_ms = invite["dur"] * 1000
    fields = {
        "id": pk_id, "a": a, "b": b, "duration_ms": duration_ms,
        "like_points": int(invite.get("lp", 1)), "gmv_points": int(invite.get("gp", 1)),
        "channel_a": keys.channel(a), "channel_b": keys.channel(b),
        "title_a": first["title"], "title_b": second["title"],
        "host_a": first["host_name"], "host_b": second["host_name"],
        "invited_by": str(invite.get("by", "")), "accepted_by": claims.user_id,
    }  # fmt: skip
    args: list[Any] = []
    for name, value in fields.items():
        args += (name, value)
    if await service.run("create", key, *args) == "used":
        raise conflict("invite_used", "this PK invite was already used")
    claimed: list[str] = []
    ttl_ms = duration_ms + POINTER_GRACE_MS
    try:
        await app[REDIS].zadd(ACTIVE, {pk_id: int(time.time() * 1000) + ttl_ms})
        for show_id in (a, b):
            await _claim(service, show_id, pk_id, ttl_ms)
            claimed.append(show_id)
        started = await service.run("activate", key, KEEP_MS)
        if not started:
            raise conflict("invite_used", "this PK invite was already used")
        event = json.loads(started)
        await app[REDIS].zadd(ACTIVE, {pk_id: event["ends_at"]})
    except BaseException:
        with contextlib.suppress(Exception):
            for show_id in claimed:
                await service.release(show_id, pk_id)
            await service.run("abort", key)
            await app[REDIS].zrem(ACTIVE, pk_id)
        raise
    for show_id in (a, b):
        await audit(app, dataclasses.replace(claims, show_id=show_id), "pk.start", pk_id, a=a, b=b)
    return await service.record(pk_id)


async def _claim(service: PkService, show_id: str, pk_id: str, ttl_ms: int) -> None:
    code, other = await service.claim(show_id, pk_id, ttl_ms)
    if code == "busy":
        stale = await service.record(other)
        if stale.get("status") in (None, "ended"):  # left by a crashed node: free it, once
            await service.release(show_id, other)
            code, other = await service.claim(show_id, pk_id, ttl_ms)
    if code == "not_live":
        raise conflict("not_live", f"show {show_id!r} is not live", show_id=show_id)
    if code != "ok":
        raise conflict("already_in_pk", f"show {show_id!r} is already in a PK", show_id=show_id)


@operation("Decline a PK invite (host of the invited show)", body=InviteAnswer,
           responses={200: Declined})  # fmt: skip
async def handle_decline(request: web.Request) -> web.Response:
    show_id, claims = await _host(request)
    invite = read_invite(
        request.app[SETTINGS].secret, (await read_body(request, InviteAnswer))["invite"]
    )
    if invite["to"] != show_id:
        raise ApiError(403, "bad_invite", "this PK invite is for another show")
    event = {"type": "pk.declined", "pk_id": invite["jti"], "by_show": show_id}
    await broker.publish(request.app, invite["from"], event, staff_only=True)
    await audit(request.app, claims, "pk.decline", invite["from"], pk_id=invite["jti"])
    return web.json_response({"declined": invite["jti"]})


@operation("End the show's PK now (host of either show): cancelled, no winner",
           responses={200: PkOut})  # fmt: skip
async def handle_end(request: web.Request) -> web.Response:
    show_id, claims = await _host(request)
    service = request.app[PK]
    record = await service.current(show_id)
    if not record or record.get("status") != "active":
        raise conflict("not_in_pk", "this show is not in a PK battle")
    await service.finish(record["id"], "ended_by_host", claims)
    final = await service.record(record["id"])
    return web.json_response({"pk": public_state(final, show_id), "opponent_token": None})


@operation("The show's PK battle, if any (any token of the show)", responses={200: PkOut})
async def handle_get(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    await get_show(request.app, show_id)
    claims = await auth.authenticate(request, show_id)
    record = await request.app[PK].current(show_id)
    if not record or record.get("status") not in ("active", "ended"):
        return web.json_response({"pk": None, "opponent_token": None})
    state = public_state(record, show_id)
    token = None
    if state["status"] == "active":
        # The viewer watches the opponent under their own id (the opponent's bans apply); it is
        # no more than the guest token anyone may take for that show.
        token = auth.issue(
            request.app[SETTINGS].secret,
            show_id=state["opponent"],
            role="viewer",
            name=claims.name,
            user_id=claims.user_id,
            ttl_s=max(60, state["remaining_ms"] // 1000 + 120),
            guest=claims.guest,
        )
    return web.json_response({"pk": state, "opponent_token": token})


async def _pk_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[PK] = PkService(app)
    task = asyncio.create_task(service.loop(), name="pk-ticker")
    yield
    service.stopped = True
    task.cancel()
    await asyncio.wait([task], timeout=3)


def setup(app: web.Application) -> None:
    register(app, "PK battles (server/realtime/pk.py, docs/pk.md)", events=EVENTS)
    app.cleanup_ctx.append(_pk_ctx)
    app.router.add_get("/api/shows/{show_id}/pk", handle_get)
    app.router.add_post("/api/shows/{show_id}/pk", handle_invite)
    app.router.add_post("/api/shows/{show_id}/pk/accept", handle_accept)
    app.router.add_post("/api/shows/{show_id}/pk/decline", handle_decline)
    app.router.add_post("/api/shows/{show_id}/pk/end", handle_end)

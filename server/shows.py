"""Shows and identity over HTTP: create a show, list shows, mint tokens, hand out guest tokens.

A show is a Redis hash ``{show:ID}:meta`` plus an entry in the global show index.
Creating a show needs an operator API key (``Authorization: Bearer ID:SECRET``) and answers
with the host token for it; see docs/security.md.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from . import auth
from .appkeys import REDIS, SETTINGS
from .errors import ApiError, bad_request, not_found
from .openapi import operation, prop, read_body
from .redis import broker, keys, lua

SHOW_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TITLE = 120
MAX_NAME = 40
SHOW_META = lua.Script(Path(__file__).parent / "show_meta.lua")


def check_show_id(show_id: str) -> str:
    if not SHOW_ID_RE.fullmatch(show_id):  # fullmatch: "$" alone lets "id\n" through
        raise bad_request("bad_show_id", "show id must be 1-64 of A-Z a-z 0-9 _ -")
    return show_id


def _clean_text(value: Any, field: str, max_len: int, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or not value.strip():
        raise bad_request("bad_field", f"{field} must be a non-empty string", field=field)
    value = value.strip()
    if len(value) > max_len:
        raise bad_request("bad_field", f"{field} is longer than {max_len} characters", field=field)
    return value


async def get_show(app: web.Application, show_id: str) -> dict[str, Any]:
    """The show's public fields, or 404 ``show_not_found``."""
    check_show_id(show_id)
    meta = await app[REDIS].hgetall(keys.meta(show_id))
    if "created_at" not in meta:  # none, or half a record left by an older version's create
        raise not_found("show_not_found", f"no show {show_id!r}")
    return _public(meta)


def _public(meta: dict[str, str]) -> dict[str, Any]:
    return {
        "id": meta["id"],
        "title": meta["title"],
        "host_name": meta["host_name"],
        "status": meta["status"],
        "created_at": int(meta["created_at"]),
        "live_since": int(meta["live_since"]) if meta.get("live_since") else None,
        "cohost": _cohost(meta.get("cohost")),
        "replay_url": meta.get("replay_url") or None,  # set by server/insight/replay.py
    }


def _cohost(raw: str | None) -> dict[str, Any] | None:
    """The live co-host ``{user_id, name, since}`` (issue 20, server/cohost.py), or None."""
    from .cohost import public

    return public(raw)


async def create_show(
    app: web.Application, title: str, host_name: str, show_id: Any = None
) -> tuple[dict[str, Any], str, bool]:
    """Create the show (or return the existing one with that id). Returns (show, host token, created)."""
    if show_id is not None and not isinstance(show_id, str):
        raise bad_request("bad_show_id", "show id must be a string of 1-64 A-Z a-z 0-9 _ -")
    show_id = (
        check_show_id(show_id)
        if show_id
        else secrets.token_urlsafe(6).replace("-", "x").replace("_", "y")
    )
    redis = app[REDIS]
    now_ms = int(time.time() * 1000)
    host_id = "host_" + show_id
    created = await _write_meta(
        app,
        show_id,
        "create",
        {
            "id": show_id,
            "title": title,
            "host_id": host_id,
            "host_name": host_name,
            "status": "upcoming",
            "created_at": now_ms,
            "live_since": "",
        },
    )
    show = await get_show(app, show_id)
    # The index lives in another Cluster slot, so it cannot join the atomic write; NX makes
    # a retry after a crash between the two (or a create of an existing id) repair it.
    await redis.zadd(keys.SHOW_INDEX, {show_id: show["created_at"]}, nx=True)
    token = auth.issue(
        app[SETTINGS].secret, show_id=show_id, role="host", name=show["host_name"], user_id=host_id
    )
    return show, token, created


async def set_live(app: web.Application, show_id: str, live: bool) -> None:
    """Mark the show live (a publisher is on) or ended, and tell every viewer."""
    fields = (
        {"status": "live", "live_since": int(time.time() * 1000)} if live else {"status": "ended"}
    )
    if not await _write_meta(app, show_id, "update", fields):
        return  # an unknown show id: nothing to mark, and no partial record is created
    event: dict[str, Any] = {"type": "show.live" if live else "show.ended"}
    if not live:  # the recording the end stopped becomes the replay first; the event names it
        from .insight import replay

        event.update(await replay.show_ended(app, show_id))
    await broker.publish(app, show_id, event)


# INCR and its EXPIRE in one step: a lost EXPIRE would lock an address out for good. A counter
# found without a TTL (left by an older version) gets one too.
COUNT_IN_WINDOW = lua.Script(
    source="""
local n = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""
)


async def _count_in_window(app: web.Application, key: str, ttl_s: int) -> int:
    """Count one more hit on a fixed-window counter that always expires."""
    return int(await COUNT_IN_WINDOW(app, [key], [ttl_s]))


async def _write_meta(
    app: web.Application, show_id: str, mode: str, fields: dict[str, Any]
) -> bool:
    """Write the meta hash in one step: ``create`` only if absent, ``update`` only if present."""
    args: list[Any] = [mode]
    for name, value in fields.items():
        args += (name, value)
    return bool(await SHOW_META(app, [keys.meta(show_id)], args))


# ----------------------------------------------------------------------------- declarations
# The bodies these handlers read and answer: checked by read_body, listed in /api/openapi.json.


@dataclass
class CreateShowBody:
    """A new show (every field optional)."""

    id: str | None = prop("1-64 of A-Z a-z 0-9 _ - (default: generated)", None,
                          code="bad_show_id", pattern=SHOW_ID_RE.pattern)  # fmt: skip
    title: str | None = prop("the show's title", None, maxLength=MAX_TITLE)
    host_name: str | None = prop("the host's display name", None, maxLength=MAX_NAME)


@dataclass
class CohostOut:
    """The live co-host (issue 20)."""

    user_id: str
    name: str
    since: int = prop("ms since the epoch")


@dataclass
class ShowOut:
    """A show's public fields."""

    id: str
    title: str
    host_name: str
    status: Literal["upcoming", "live", "ended"]
    created_at: int = prop("ms since the epoch")
    live_since: int | None = prop("ms since the epoch, or null")
    cohost: CohostOut | None = prop("the live co-host, or null", None)
    replay_url: str | None = prop("the newest published replay's page (/replay/ID), or null", None)


@dataclass
class CreatedShow:
    """The new show and its host token."""

    show: ShowOut
    host_token: str


@dataclass
class OneShow:
    """One show."""

    show: ShowOut


@dataclass
class ShowList:
    """The newest 100 shows."""

    shows: list[ShowOut]


@dataclass
class MintBody:
    """A token to mint (host tokens need an operator API key)."""

    role: Literal["host", "moderator", "viewer"] = prop("the token's role", "viewer")
    name: str | None = prop("display name", None, maxLength=MAX_NAME)
    ttl_s: int = prop("lifetime in seconds", auth.DEFAULT_TTL_S, minimum=60, maximum=30 * 24 * 3600)


@dataclass
class GuestBody:
    """An anonymous viewer's optional display name."""

    name: str | None = prop("display name (default: Guest NNNN)", None, maxLength=MAX_NAME)


@dataclass
class MintedToken:
    """A signed JWT for one user of the show."""

    token: str
    user_id: str
    role: Literal["host", "moderator", "viewer"]
    name: str


@operation("Open a show; answers with its host token", auth="operator", body=CreateShowBody,
           responses={201: CreatedShow})  # fmt: skip
async def handle_create(request: web.Request) -> web.Response:
    auth.require_operator(request)
    body = await read_body(request, CreateShowBody)
    title = _clean_text(body.get("title"), "title", MAX_TITLE, default="Live show")
    host_name = _clean_text(body.get("host_name"), "host_name", MAX_NAME, default="Host")
    show, token, created = await create_show(request.app, title, host_name, body.get("id"))
    if not created:
        raise ApiError(409, "show_exists", f"show {show['id']!r} already exists")
    return web.json_response({"show": show, "host_token": token}, status=201)


@operation("The newest shows", auth="none", responses={200: ShowList})
async def handle_list(request: web.Request) -> web.Response:
    redis = request.app[REDIS]
    ids = await redis.zrevrange(keys.SHOW_INDEX, 0, 99)
    shows = []
    for show_id in ids:
        meta = await redis.hgetall(keys.meta(show_id))
        if "created_at" in meta:
            shows.append(_public(meta))
    return web.json_response({"shows": shows})


@operation("One show", auth="none", responses={200: OneShow})
async def handle_get(request: web.Request) -> web.Response:
    return web.json_response({"show": await get_show(request.app, request.match_info["show_id"])})


async def _minting_roles(request: web.Request, show_id: str) -> tuple[str, ...]:
    """Roles the caller may mint: an operator API key any role, the show's host moderator/viewer."""
    if auth.operator_key_id(request) is not None:
        return auth.ROLES
    await auth.authenticate(request, show_id, {"host"})
    return ("moderator", "viewer")


@operation("Mint a token for the show", auth="token_or_operator", body=MintBody,
           responses={201: MintedToken})  # fmt: skip
async def handle_mint_token(request: web.Request) -> web.Response:
    """Mint tokens: the host for the "1 host + N operators" team, an operator for any role."""
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    allowed = await _minting_roles(request, show_id)
    body = await read_body(request, MintBody)
    role = body.get("role", "viewer")
    if role == "host" and "host" not in allowed:
        raise auth.require_operator_error()
    if role not in allowed:
        raise bad_request("bad_role", "role must be " + ", ".join(repr(r) for r in allowed))
    name = _clean_text(body.get("name"), "name", MAX_NAME, default=role.capitalize())
    ttl = body.get("ttl_s", auth.DEFAULT_TTL_S)
    if not isinstance(ttl, int) or not 60 <= ttl <= 30 * 24 * 3600:
        raise bad_request("bad_field", "ttl_s must be an integer from 60 to 2592000", field="ttl_s")
    user_id = "host_" + show_id if role == "host" else auth.new_user_id(role[0])
    token = auth.issue(
        request.app[SETTINGS].secret,
        show_id=show_id,
        role=role,
        name=name,
        user_id=user_id,
        ttl_s=ttl,
    )
    return web.json_response(
        {"token": token, "user_id": user_id, "role": role, "name": name}, status=201
    )


@operation("An anonymous viewer token (rate-limited per IP)", auth="none", body=GuestBody,
           responses={201: MintedToken})  # fmt: skip
async def handle_guest(request: web.Request) -> web.Response:
    """An anonymous viewer token, rate-limited per client IP."""
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    settings = request.app[SETTINGS]
    ip = request.remote or "unknown"
    bucket = f"liveshop:guest_rate:{ip}:{int(time.time() // 60)}"
    count = await _count_in_window(request.app, bucket, 120)
    if count > settings.guest_per_minute:
        raise ApiError(
            429, "rate_limited", "too many guest tokens from this address; wait a minute"
        )
    body = await read_body(request, GuestBody)
    user_id = auth.new_user_id("g")
    default_name = "Guest " + user_id[-4:]
    name = _clean_text(body.get("name"), "name", MAX_NAME, default=default_name)
    token = auth.issue(
        settings.secret, show_id=show_id, role="viewer", name=name, user_id=user_id, guest=True
    )
    return web.json_response(
        {"token": token, "user_id": user_id, "role": "viewer", "name": name}, status=201
    )


def setup(app: web.Application) -> None:
    app.router.add_post("/api/shows", handle_create)
    app.router.add_get("/api/shows", handle_list)
    app.router.add_get("/api/shows/{show_id}", handle_get)
    app.router.add_post("/api/shows/{show_id}/tokens", handle_mint_token)
    app.router.add_post("/api/shows/{show_id}/guest", handle_guest)

"""Co-hosts (issue 20, 連麥): a second camera in the host's show.

The host mints a ``cohost`` token (:func:`handle_invite`, limited to the show, optionally with
moderator rights); its holder publishes over WHIP like the host — ``POST /whip/{show}`` (the
token picks the stream: what OBS needs) or ``POST /whip/{show}/cohost`` — into the show's
``cohost`` stream, a second Router (``media.streams``). Viewers play it with
``POST /whep/{show}/cohost`` next to the host's; the page lays both out side by side.

State: the show's meta hash field ``cohost`` (JSON ``{user_id, name, since, session}``) while a
co-host is live, so ``GET /api/shows/{id}``, the WebSocket ``welcome`` and ``resync`` carry it
with no extra round trip; every change is a ``cohost`` event. One co-host at a time: a second
one is ``409 cohost_live``. The host removes the co-host (:func:`handle_remove`): their WHIP
session ends wherever it runs and their token is revoked on every node (the access channel's
hook ends the publisher on the node holding it, and their playback and chat too).
Every host action is written to the show's audit stream.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from media.errors import MediaError
from media.streams import COHOST, media_id
from media.whip import PublisherSession

from . import auth
from .access import MEDIA_VIEWERS
from .appkeys import REDIS, SETTINGS
from .auth import Claims
from .errors import ApiError
from .openapi import operation, prop, read_body
from .protocol.registry import Event, register
from .realtime.moderation import audit
from .redis import broker, keys
from .revocation import REVOCATIONS, revoke
from .shows import MAX_NAME, check_show_id, get_show

# Which user publishes each co-host stream held by this process (media id → user id).
LOCAL_COHOSTS = web.AppKey("local_cohosts", dict)
FIELD = "cohost"  # the field of the show's meta hash


# ----------------------------------------------------------------------------- the event


class CohostEvent(Event, tag="cohost"):
    """A co-host went live (play `POST /whep/{show}/cohost` beside the host) or left/was removed."""

    live: Annotated[bool, Meta(description="true: the co-host's stream is live; false: it ended")]
    user_id: Annotated[str, Meta(description="the co-host's user id")]
    name: Annotated[str, Meta(description="the co-host's display name")]


# ----------------------------------------------------------------------------- state


async def current(app: web.Application, show_id: str) -> dict[str, Any] | None:
    """The live co-host ``{user_id, name, since, session}``, or None."""
    raw = await app[REDIS].hget(keys.meta(show_id), FIELD)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def public(raw: str | None) -> dict[str, Any] | None:
    """What clients see of the meta field: ``{user_id, name, since}`` (never the session)."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {k: value.get(k) for k in ("user_id", "name", "since")}


async def _announce(app: web.Application, show_id: str, live: bool, who: dict[str, Any]) -> None:
    event = {"type": "cohost", "live": live, "user_id": who.get("user_id", ""),
             "name": who.get("name", "")}  # fmt: skip
    await broker.publish(app, show_id, event)


async def stream_ended(app: web.Application, show_id: str) -> None:
    """The co-host stream's publisher ended (left, removed, connection lost): tell everyone."""
    app[LOCAL_COHOSTS].pop(media_id(show_id, COHOST), None)
    who = await current(app, show_id)
    await app[REDIS].hset(keys.meta(show_id), FIELD, "")
    await _announce(app, show_id, False, who or {})


# ----------------------------------------------------------------------------- WHIP


async def publish_cohost(request: web.Request, show_id: str, claims: Claims) -> web.Response:
    """``POST /whip/{show}[/cohost]`` with a cohost token: go live in the show's cohost stream.

    403 for any other role; ``409 cohost_live`` while another co-host is live (anywhere);
    the same co-host may take over its own session with ``?replace=1`` (a reloaded page).
    """
    from .media_api import CONTROL, RELAY, _created, _read_offer

    claims.require({"cohost"})
    app = request.app
    offer = await _read_offer(request)
    replace = request.query.get("replace", "") in ("1", "true", "yes")
    live = await current(app, show_id)
    if live is not None and not (replace and live.get("user_id") == claims.user_id):
        raise ApiError(409, "cohost_live", f"{live.get('name') or 'a co-host'} is already live")
    media = media_id(show_id, COHOST)
    try:
        session = await app[RELAY].publish(media, offer, replace=replace)
    except MediaError as exc:
        if exc.code == "already_live":  # a co-host went live here a moment ago
            raise ApiError(409, "cohost_live", "a co-host is already live") from None
        raise
    app[LOCAL_COHOSTS][media] = claims.user_id
    who = {"user_id": claims.user_id, "name": claims.name, "since": int(time.time() * 1000),
           "session": f"{session.id}~{app[CONTROL].token}"}  # fmt: skip
    await app[REDIS].hset(keys.meta(show_id), FIELD, json.dumps(who, separators=(",", ":")))
    await _announce(app, show_id, True, who)
    await audit(app, claims, "cohost.live", claims.user_id)
    return _created(request, "whip", show_id, session.id, session.answer, COHOST)  # type: ignore[attr-defined]


async def _end_session(app: web.Application, show_id: str, session: str) -> None:
    """End the co-host's WHIP session here or on the process that holds it."""
    from .media_api import CONTROL, RELAY

    session_id, _, token = session.rpartition("~")
    media = media_id(show_id, COHOST)
    try:
        if token == app[CONTROL].token:
            await app[RELAY].get(media, session_id, "whip").end()
        else:
            await app[CONTROL].call(
                token, "end", kind="whip", show_id=media, session_id=session_id, user_id=None
            )
    except MediaError as exc:
        if exc.code not in ("no_session", "no_process", "process_timeout"):
            raise  # gone already, or its process is: the revocation hook covers the rest


async def _on_access(app: web.Application, kind: str, show_id: str, user_id: str, at: int) -> None:
    """Access-channel hook (every node): a revoked or banned co-host loses their stream here."""
    from .media_api import RELAY, WORKERS

    media = media_id(show_id, COHOST)
    if RELAY in app and app[LOCAL_COHOSTS].get(media) == user_id:
        router = app[RELAY].routers.get(media)
        if router is not None and isinstance(router.publisher, PublisherSession):
            await router.publisher.end()
    for session_id in app[MEDIA_VIEWERS].pop_user(media, user_id):  # their cohost playback
        try:
            pool = app.get(WORKERS)
            if pool is not None and pool.owns(session_id):
                await pool.end_viewer(media, session_id)
            elif RELAY in app:
                await app[RELAY].get(media, session_id, "whep").end()
        except MediaError:
            pass  # already gone


# ----------------------------------------------------------------------------- HTTP


@dataclass
class InviteBody:
    """Who the host invites to co-host."""

    name: str | None = prop("the co-host's display name (default: Co-host)", None,
                            maxLength=MAX_NAME)  # fmt: skip
    moderator: bool = prop("also give moderator rights (chat moderation, commerce)", False)
    ttl_s: int = prop("lifetime in seconds", auth.DEFAULT_TTL_S, minimum=60, maximum=7 * 24 * 3600)


@dataclass
class Invite:
    """A co-host token for this show and the studio link that carries it."""

    token: str
    user_id: str
    role: str
    name: str
    moderator: bool
    studio_path: str = prop("open in a browser: the studio in co-host mode")


@dataclass
class RemoveBody:
    """Which co-host to remove (default: the live one)."""

    user_id: str | None = prop("a co-host's user id", None, minLength=1, maxLength=auth.MAX_SUB,
                               pattern="^[^/]+$")  # fmt: skip


@dataclass
class Removed:
    """The co-host's stream ended and their tokens for the show are refused from revoked_at (s)."""

    user_id: str
    revoked_at: int
    was_live: bool


@operation("Host: invite a co-host (mint a cohost token)", body=InviteBody,
           responses={201: Invite})  # fmt: skip
async def handle_invite(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    await get_show(request.app, show_id)
    claims = await auth.authenticate(request, show_id, {"host"})
    body = await read_body(request, InviteBody)
    name = (body.get("name") or "").strip() or "Co-host"
    if len(name) > MAX_NAME:
        raise ApiError(400, "bad_field", f"name is longer than {MAX_NAME} characters", field="name")
    moderator = body.get("moderator", False) is True
    user_id = auth.new_user_id("c")
    token = auth.issue(
        request.app[SETTINGS].secret,
        show_id=show_id,
        role="cohost",
        name=name,
        user_id=user_id,
        ttl_s=int(body.get("ttl_s", auth.DEFAULT_TTL_S)),
        moderator=moderator,
    )
    await audit(request.app, claims, "cohost.invite", user_id, name=name, moderator=int(moderator))
    return web.json_response(
        {"token": token, "user_id": user_id, "role": "cohost", "name": name,
         "moderator": moderator, "studio_path": f"/host/{show_id}#token={token}"},
        status=201,
    )  # fmt: skip


@operation("Host: remove the co-host (ends their stream, revokes their token)",
           body=RemoveBody, responses={200: Removed})  # fmt: skip
async def handle_remove(request: web.Request) -> web.Response:
    show_id = check_show_id(request.match_info["show_id"])
    await get_show(request.app, show_id)
    claims = await auth.authenticate(request, show_id, {"host"})
    body = await read_body(request, RemoveBody) if request.can_read_body else {}
    live = await current(request.app, show_id)
    user_id = body.get("user_id") or (live or {}).get("user_id")
    if not user_id:
        raise ApiError(404, "no_cohost", "no co-host is live in this show")
    host_id = await request.app[REDIS].hget(keys.meta(show_id), "host_id")
    if user_id == host_id:
        raise ApiError(400, "bad_field", "the host is not a co-host", field="user_id")
    was_live = live is not None and live.get("user_id") == user_id
    at = await revoke(request.app, show_id, user_id)  # every node: the hook ends the stream
    if was_live and live is not None:
        await _end_session(request.app, show_id, str(live.get("session", "")))
    await audit(request.app, claims, "cohost.remove", user_id, was_live=int(was_live))
    return web.json_response({"user_id": user_id, "revoked_at": at, "was_live": was_live})


def setup(app: web.Application) -> None:
    app[LOCAL_COHOSTS] = {}
    app[REVOCATIONS].hooks.append(_on_access)  # server.access (earlier in PARTS) made it
    register(app, "Events (inside `batch`)", events=(CohostEvent,))
    app.router.add_post("/api/shows/{show_id}/cohost/invite", handle_invite)
    app.router.add_post("/api/shows/{show_id}/cohost/remove", handle_remove)

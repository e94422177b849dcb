"""Who may reach what: client addresses, per-IP limits, token revocation, who may watch.

- :func:`client_ip` is the address limits count against (``X-Forwarded-For`` only from a
  ``--trusted-proxies`` address).
- The access middleware answers ``429 rate_limited`` to an address sending too many
  unauthenticated requests, and adds ``WWW-Authenticate: Bearer`` to every 401 (RFC 6750 §3).
- :func:`limit_ws_connects` wraps the WebSocket route: per-IP connect rate and open-socket cap.
- ``POST /api/shows/{id}/revoke`` revokes a user's tokens on every node (server/revocation.py).
- :func:`assert_may_watch` is the one check before any media is handed out (WHEP, HLS); the media
  sessions of a banned or revoked user end on every node (the access channel's hook here).
"""

from __future__ import annotations

import contextvars
import functools
import ipaddress
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import auth, revocation
from .appkeys import REDIS, SETTINGS
from .errors import ApiError, Close, Code, forbidden, ws_error
from .openapi import operation, prop, read_body
from .ratelimit import KeyedLimiter
from .redis import keys

log = logging.getLogger("liveshop.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNLIMITED_PATHS = frozenset({"/healthz", "/metrics"})  # probes and scrapers, never limited


# ----------------------------------------------------------------------------- client address


@functools.lru_cache(maxsize=16)
def _networks(
    trusted: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def _trusted(address: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(request: web.Request) -> str:
    """The client's address: the peer, or from a trusted proxy the last untrusted X-Forwarded-For hop."""
    peer = request.remote or "unknown"
    networks = _networks(tuple(request.app[SETTINGS].trusted_proxies))
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _trusted(hop, networks):
            return hop
    return peer


# The client address of the WebSocket session whose task is running (set by limit_ws_connects):
# what a command handler, which sees only the claims, counts a buy against.
_WS_CLIENT_IP: contextvars.ContextVar[str | None] = contextvars.ContextVar("ws_ip", default=None)


def ws_client_ip() -> str | None:
    """The client address (as :func:`client_ip`) of the WebSocket session running this code."""
    return _WS_CLIENT_IP.get()


# ----------------------------------------------------------------------------- per-IP limits


class Limits:
    """This node's per-IP limiters (in memory: descriptors are a per-node resource)."""

    def __init__(self, settings: Any) -> None:
        self.http = KeyedLimiter(settings.http_anon_per_ip, settings.http_anon_burst)
        self.ws = KeyedLimiter(settings.ws_connects_per_ip, settings.ws_connect_burst)
        self.ws_max = settings.ws_max_per_ip
        self.ws_open: Counter[str] = Counter()


LIMITS = web.AppKey("access_limits", Limits)


def _rate_limited(message: str) -> web.Response:
    body = {"error": {"code": "rate_limited", "message": message}}
    return web.json_response(body, status=429, headers={"Retry-After": "1"})


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Limit unauthenticated requests per IP; say ``WWW-Authenticate: Bearer`` on every 401."""
    token = auth.token_from_request(request)
    if (
        request.path not in UNLIMITED_PATHS
        and not (token and _authenticated(request, token))
        and not request.app[LIMITS].http.take(client_ip(request))
    ):
        return _rate_limited("too many requests from this address; slow down")
    response = await handler(request)
    if response.status == 401 and "WWW-Authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = 'Bearer realm="liveshop"'
    return response


def _authenticated(request: web.Request, token: str) -> bool:
    """A valid JWT or API key exempts a request from the anonymous limit; a made-up one does not."""
    return auth.is_valid(request.app, token) or auth.operator_key_id(request) is not None


def limit_ws_connects(handler: Handler) -> Handler:
    """Wrap the WebSocket route: refuse (429, before the upgrade) a connect over the IP's rate or cap."""

    @functools.wraps(handler)
    async def limited(request: web.Request) -> web.StreamResponse:
        limits = request.app[LIMITS]
        ip = client_ip(request)
        if limits.ws_max and limits.ws_open[ip] >= limits.ws_max:
            return _rate_limited("too many open connections from this address")
        if not limits.ws.take(ip):
            return _rate_limited("too many connects from this address; slow down")
        limits.ws_open[ip] += 1
        address = _WS_CLIENT_IP.set(ip)
        try:
            return await handler(request)
        finally:
            _WS_CLIENT_IP.reset(address)
            limits.ws_open[ip] -= 1
            if limits.ws_open[ip] <= 0:
                del limits.ws_open[ip]

    return limited


# ----------------------------------------------------------------------------- who may watch


class MediaViewers:
    """This node's WHEP sessions and who made them: the owner check for DELETE, the end on ban."""

    MAX_PER_USER = 16

    def __init__(self) -> None:
        self.owner: dict[str, tuple[str, str]] = {}  # session id → (show, user)
        self.by_user: dict[tuple[str, str], list[str]] = {}

    def add(self, show_id: str, session_id: str, user_id: str) -> None:
        sessions = self.by_user.setdefault((show_id, user_id), [])
        sessions.append(session_id)
        self.owner[session_id] = (show_id, user_id)
        while len(sessions) > self.MAX_PER_USER:  # ended sessions nobody DELETEd: forget the oldest
            self.owner.pop(sessions.pop(0), None)

    def discard(self, session_id: str) -> None:
        key = self.owner.pop(session_id, None)
        if key is not None:
            sessions = self.by_user.get(key, [])
            if session_id in sessions:
                sessions.remove(session_id)
            if not sessions:
                self.by_user.pop(key, None)

    def pop_user(self, show_id: str, user_id: str) -> list[str]:
        sessions = self.by_user.pop((show_id, user_id), [])
        for session_id in sessions:
            self.owner.pop(session_id, None)
        return sessions


MEDIA_VIEWERS = web.AppKey("media_viewers", MediaViewers)


async def assert_may_watch(app: web.Application, show_id: str, user_id: str) -> None:
    """403 ``banned`` when the user may not receive the show's media (WHEP, HLS, …)."""
    if await app[REDIS].sismember(keys.banned(show_id), user_id):
        raise ApiError(403, "banned", "you are banned from this show")


def viewer_started(app: web.Application, show_id: str, session_id: str, user_id: str) -> None:
    """Remember who made a WHEP session (media_api calls this after the answer)."""
    app[MEDIA_VIEWERS].add(show_id, session_id, user_id)


def assert_owns_viewer(app: web.Application, show_id: str, session_id: str, user_id: str) -> None:
    """A WHEP session may be ended only with a token of the user who made it (403 otherwise).

    Checked in the process that holds the session (a DELETE landing elsewhere is passed on to
    it over the control channel, which carries only MediaErrors back).
    """
    from media.errors import MediaError

    owner = app[MEDIA_VIEWERS].owner.get(session_id)
    if owner is not None and owner != (show_id, user_id):
        raise MediaError(403, "forbidden", "this playback session belongs to another user")
    app[MEDIA_VIEWERS].discard(session_id)


async def _end_media(app: web.Application, kind: str, show_id: str, user_id: str, at: int) -> None:
    """Access-channel hook: end the user's media sessions (and, on revoke, WebSockets) here."""
    from media.errors import MediaError

    from .media_api import RELAY, WORKERS
    from .ws.hub import HUBS

    for session_id in app[MEDIA_VIEWERS].pop_user(show_id, user_id):
        try:
            pool = app.get(WORKERS)
            if pool is not None and pool.owns(session_id):
                await pool.end_viewer(show_id, session_id)
            elif RELAY in app:
                await app[RELAY].get(show_id, session_id, "whep").end()
        except MediaError:
            pass  # already gone
    hub = app[HUBS].hubs.get(show_id) if kind == "revoke" and HUBS in app else None
    for conn in list(hub.conns) if hub else []:
        if conn.user_id == user_id and conn.claims.iat <= at:
            conn.send_message(ws_error(Code.TOKEN_REVOKED, "token revoked"))
            conn.close(Close.BAD_TOKEN, "token_revoked")


# ----------------------------------------------------------------------------- revoke


@dataclass
class RevokeBody:
    """Whose tokens to revoke."""

    user_id: str = prop("the user id (a token's sub)", minLength=1, maxLength=auth.MAX_SUB,
                        pattern="^[^/]+$")  # fmt: skip


@dataclass
class Revoked:
    """Tokens of the user issued at or before revoked_at (s) are refused on every node."""

    user_id: str
    revoked_at: int


@operation("Revoke a user's tokens for the show (staff or operator)", auth="token_or_operator",
           body=RevokeBody, responses={200: Revoked})  # fmt: skip
async def handle_revoke(request: web.Request) -> web.Response:
    """Revoke a user's tokens for the show: the show's staff, or an operator API key."""
    from .realtime.moderation import audit
    from .shows import get_show

    show_id = request.match_info["show_id"]
    show = await get_show(request.app, show_id)
    claims = None
    if auth.operator_key_id(request) is None:
        claims = await auth.authenticate(request, show_id, auth.STAFF)
    user_id = (await read_body(request, RevokeBody))["user_id"]
    if claims is not None:
        host_id = await request.app[REDIS].hget(keys.meta(show_id), "host_id")
        if user_id == host_id:
            raise forbidden("only an operator API key may revoke the host")
    at = await revocation.revoke(request.app, show["id"], user_id)
    if claims is not None:
        await audit(request.app, claims, "revoke", user_id)
    return web.json_response({"user_id": user_id, "revoked_at": at})


def setup(app: web.Application) -> None:
    revocations = app[revocation.REVOCATIONS] = revocation.Revocations()
    revocations.hooks.append(_end_media)
    app[MEDIA_VIEWERS] = MediaViewers()
    app[LIMITS] = Limits(app[SETTINGS])
    app.middlewares.insert(0, access_middleware)  # outermost: sees the 401s error_middleware makes
    app.cleanup_ctx.append(revocation.revocations_ctx)
    app.router.add_post("/api/shows/{show_id}/revoke", handle_revoke)

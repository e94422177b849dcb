"""Signed tokens and roles.

A token is ``base64url(json claims) "." base64url(HMAC-SHA256(secret, payload))``. Claims carry
the user id, display name, role, the show the token is for and an expiry. Every action checks
the role through :func:`authenticate` (HTTP) or :meth:`Claims.require` (WebSocket).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Literal

from aiohttp import web

from .errors import ApiError, forbidden, unauthorized

Role = Literal["host", "moderator", "viewer"]
ROLES: tuple[Role, ...] = ("host", "moderator", "viewer")
STAFF: frozenset[str] = frozenset({"host", "moderator"})
ANY_ROLE: frozenset[str] = frozenset(ROLES)

DEFAULT_TTL_S = 24 * 3600


@dataclass(frozen=True)
class Claims:
    user_id: str
    name: str
    role: Role
    show_id: str
    exp: int
    guest: bool = False

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF

    def require(self, roles: frozenset[str] | set[str]) -> None:
        if self.role not in roles:
            raise forbidden(f"role '{self.role}' may not do this")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_user_id(prefix: str = "u") -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def issue(
    secret: str,
    *,
    show_id: str,
    role: Role,
    name: str,
    user_id: str | None = None,
    ttl_s: int = DEFAULT_TTL_S,
    guest: bool = False,
) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    claims = Claims(
        user_id=user_id or new_user_id(),
        name=name,
        role=role,
        show_id=show_id,
        exp=int(time.time()) + ttl_s,
        guest=guest,
    )
    payload = _b64(json.dumps(asdict(claims), separators=(",", ":"), ensure_ascii=False).encode())
    signature = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def verify(secret: str, token: str, show_id: str | None = None) -> Claims:
    """Claims of a valid token, or ApiError 401 (bad/expired) / 403 (another show)."""
    try:
        payload, signature = token.split(".")
        expected = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            raise ValueError("signature")
        claims = Claims(**json.loads(_unb64(payload)))
    except (ValueError, TypeError):
        raise unauthorized("token is invalid") from None
    if claims.role not in ROLES:
        raise unauthorized("token is invalid")
    if claims.exp < time.time():
        raise ApiError(401, "token_expired", "token has expired")
    if show_id is not None and claims.show_id != show_id:
        raise forbidden("token is for another show")
    return claims


def token_from_request(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("token")


async def authenticate(
    request: web.Request, show_id: str | None, roles: frozenset[str] | set[str] = ANY_ROLE
) -> Claims:
    """Claims of the request's token (``Authorization: Bearer`` or ``?token=``), checked for the role."""
    from .appkeys import SETTINGS

    token = token_from_request(request)
    if not token:
        raise unauthorized()
    claims = verify(request.app[SETTINGS].secret, token, show_id)
    claims.require(roles)
    return claims

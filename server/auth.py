"""Tokens, roles and operator API keys.

A token is a standard JWT (RFC 7519) signed with HS256 by PyJWT. Its header names the signing
key (``kid``): ``liveshop`` is the server's own secret (tokens the server hands out: host,
minted, guest); any other ``kid`` is an operator API key id, so a platform's backend can mint
tokens for its logged-in users with the API key's secret, the way LiveKit access tokens work.
Claims: ``sub`` (user id), ``name``, ``role``, ``show``, ``iat``, ``nbf``, ``exp`` and, for
anonymous viewers, ``guest: true``. Verification allows :data:`LEEWAY_S` of clock skew.

Operator API keys (``--api-key ID:SECRET[,ID:SECRET…]``) guard show creation and host-token
minting; several may be configured at once so a key can be rotated without downtime.
"""

from __future__ import annotations

import functools
import hmac
import itertools
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
from aiohttp import web

from .errors import ApiError, forbidden, unauthorized

Role = Literal["host", "moderator", "viewer", "cohost"]
# cohost (issue 20): publishes the show's second stream and chats; staff rights only with "mod".
ROLES: tuple[Role, ...] = ("host", "moderator", "viewer", "cohost")
STAFF: frozenset[str] = frozenset({"host", "moderator"})
ANY_ROLE: frozenset[str] = frozenset(ROLES)

DEFAULT_TTL_S = 24 * 3600
LEEWAY_S = 60  # clock skew tolerated between the minting backend and the nodes
SERVER_KID = "liveshop"  # the ``kid`` of tokens signed with the server's own secret
ALGORITHM = "HS256"
API_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MIN_API_SECRET = 16
MAX_SUB = 128
MAX_NAME = 64
REQUIRED_CLAIMS = ["sub", "role", "show", "exp", "nbf", "iat"]


@dataclass(frozen=True)
class Claims:
    user_id: str
    name: str
    role: Role
    show_id: str
    exp: int
    guest: bool = False
    iat: int = 0
    moderator: bool = False  # a co-host given moderator rights by the host (claim ``mod``)

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF or self.moderator

    def require(self, roles: frozenset[str] | set[str]) -> None:
        if self.role not in roles and not (self.moderator and "moderator" in roles):
            raise forbidden(f"role '{self.role}' may not do this")


@dataclass(frozen=True)
class Keyring:
    """Every key a token may be signed with: the server's secret and the operator API keys.

    ``verified`` remembers the payloads of tokens whose signature already checked out, so a
    token used again (every buy, every request of a session) costs a dict lookup and the time
    checks, not another HMAC and JSON parse. Only valid tokens get in, and it is bounded.
    """

    secret: str
    api_keys: dict[str, str] = field(default_factory=dict)  # id → secret
    verified: dict[str, dict[str, Any]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )  # token → payload

    def key_for(self, kid: Any) -> str | None:
        if kid == SERVER_KID:
            return self.secret
        return self.api_keys.get(kid) if isinstance(kid, str) else None

    def operator(self, presented: str) -> str | None:
        """The id of the API key ``presented`` (``ID:SECRET``), or None. Constant-time compare."""
        kid, sep, secret = presented.partition(":")
        expected = self.api_keys.get(kid) if sep else None
        if expected is None:
            hmac.compare_digest(presented, presented)  # same work whether or not the id exists
            return None
        return kid if hmac.compare_digest(secret.encode(), expected.encode()) else None


def parse_api_keys(entries: list[str]) -> dict[str, str]:
    """``["ID:SECRET", …]`` → ``{ID: SECRET}``; ValueError naming the first bad entry."""
    keys: dict[str, str] = {}
    for entry in entries:
        kid, sep, secret = entry.strip().partition(":")
        if not sep or not API_KEY_ID_RE.match(kid) or kid == SERVER_KID:
            raise ValueError(
                f"API key {kid or entry[:8]!r} must be ID:SECRET with ID of 1-32 of "
                f"A-Z a-z 0-9 _ - (not {SERVER_KID!r})"
            )
        if len(secret) < MIN_API_SECRET:
            raise ValueError(f"API key {kid!r}: secret shorter than {MIN_API_SECRET} characters")
        if kid in keys:
            raise ValueError(f"API key id {kid!r} given twice")
        keys[kid] = secret
    return keys


def new_api_key() -> str:
    """A fresh ``ID:SECRET`` operator key."""
    return f"op_{secrets.token_hex(3)}:{secrets.token_urlsafe(32)}"


@functools.lru_cache(maxsize=64)
def _keyring(secret: str, api_keys: tuple[str, ...]) -> Keyring:
    return Keyring(secret, parse_api_keys(list(api_keys)))


def keyring_of(settings: Any) -> Keyring:
    """The keyring for these Settings (parsed once per distinct configuration)."""
    return _keyring(settings.secret, tuple(settings.api_key))


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
    kid: str = SERVER_KID,
    moderator: bool = False,
) -> str:
    """A signed JWT for one user of one show (``kid`` names the key ``secret`` is)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id or new_user_id(),
        "name": name,
        "role": role,
        "show": show_id,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
    }
    if guest:
        claims["guest"] = True
    if moderator:
        claims["mod"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid})


MAX_VERIFIED = 32768  # tokens remembered per keyring (~1 KB each)


def _times_ok(payload: dict[str, Any]) -> dict[str, Any]:
    """PyJWT's exp/nbf/iat rules (with the leeway) for a payload verified earlier."""
    now = time.time()
    if payload["exp"] <= now - LEEWAY_S:
        raise ApiError(401, "token_expired", "token has expired")
    if payload["nbf"] > now + LEEWAY_S or payload["iat"] > now + LEEWAY_S:
        raise unauthorized("token is not valid yet")
    return payload


def _decode(keys: str | Keyring, token: str) -> dict[str, Any]:
    keyring = keys if isinstance(keys, Keyring) else Keyring(keys)
    hit = keyring.verified.get(token)
    if hit is not None:
        return _times_ok(hit)
    payload = _decode_jwt(keyring, token)
    verified = keyring.verified
    if len(verified) >= MAX_VERIFIED:  # forget the oldest half (dicts keep insertion order)
        for old in list(itertools.islice(verified, MAX_VERIFIED // 2)):
            del verified[old]
    verified[token] = payload
    return payload


def _decode_jwt(keyring: Keyring, token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
        key = keyring.key_for(header.get("kid"))
        if key is None or header.get("alg") != ALGORITHM:
            raise unauthorized("token is invalid")
        return jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            leeway=LEEWAY_S,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "token_expired", "token has expired") from None
    except jwt.ImmatureSignatureError:
        raise unauthorized("token is not valid yet") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise unauthorized("token is invalid") from None


def _claims(payload: dict[str, Any]) -> Claims:
    sub, name, role, show = (payload.get(k) for k in ("sub", "name", "role", "show"))
    if name is None:
        name = sub
    guest = payload.get("guest", False)
    moderator = payload.get("mod", False)
    if (
        not isinstance(sub, str)
        or not 0 < len(sub) <= MAX_SUB
        or not isinstance(name, str)
        or len(name) > MAX_NAME
        or role not in ROLES
        or not isinstance(show, str)
        or not isinstance(guest, bool)
        or not isinstance(moderator, bool)
        or not all(isinstance(payload[k], int) for k in ("exp", "iat"))
    ):
        raise unauthorized("token is invalid")
    moderator = moderator and role == "cohost"  # the claim means something for co-hosts only
    return Claims(sub, name, role, show, int(payload["exp"]), guest, int(payload["iat"]), moderator)


Revoked = Callable[[Claims], bool]


def verify(
    keys: str | Keyring, token: str, show_id: str | None = None, revoked: Revoked | None = None
) -> Claims:
    """Claims of a valid token, or ApiError 401 (bad/expired/revoked) / 403 (another show)."""
    claims = _claims(_decode(keys, token))
    if show_id is not None and claims.show_id != show_id:
        raise forbidden("token is for another show")
    if revoked is not None and revoked(claims):
        raise ApiError(401, "token_revoked", "this token was revoked")
    return claims


def verify_for(app: web.Application, token: str, show_id: str | None = None) -> Claims:
    """:func:`verify` with this app's keyring and revocation list (what every entry point uses)."""
    from .appkeys import SETTINGS
    from .revocation import REVOCATIONS

    revocations = app.get(REVOCATIONS)
    return verify(
        keyring_of(app[SETTINGS]),
        token,
        show_id,
        revocations.is_revoked if revocations is not None else None,
    )


def is_valid(app: web.Application, token: str) -> bool:
    """Whether the token is a valid, unrevoked token of this server (for any show)."""
    try:
        verify_for(app, token)
    except ApiError:
        return False
    return True


def token_from_request(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("token")


async def authenticate(
    request: web.Request, show_id: str | None, roles: frozenset[str] | set[str] = ANY_ROLE
) -> Claims:
    """Claims of the request's token (``Authorization: Bearer`` or ``?token=``), checked for the role."""
    token = token_from_request(request)
    if not token:
        raise unauthorized()
    claims = verify_for(request.app, token, show_id)
    claims.require(roles)
    return claims


def operator_key_id(request: web.Request) -> str | None:
    """The id of the operator API key the request carries as its bearer, or None."""
    from .appkeys import SETTINGS

    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    return keyring_of(request.app[SETTINGS]).operator(header[7:].strip())


def require_operator(request: web.Request) -> str:
    """The API key id, or 401 ``operator_required`` with ``WWW-Authenticate: Bearer``."""
    kid = operator_key_id(request)
    if kid is None:
        raise require_operator_error()
    return kid


def require_operator_error() -> ApiError:
    """401 ``operator_required`` (the access middleware adds ``WWW-Authenticate: Bearer``)."""
    return ApiError(
        401, "operator_required", "this needs an operator API key: Authorization: Bearer ID:SECRET"
    )

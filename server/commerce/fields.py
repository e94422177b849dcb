"""Validating request fields: every bad value is a 400 with code ``bad_field`` naming the field."""

from __future__ import annotations

import re
from typing import Annotated, Any

from msgspec import Meta

from ..errors import Code, bad_request

KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_MISSING: Any = object()
# docs/protocol.md sections of the commerce WebSocket commands and events (server.protocol registry).
COMMERCE_COMMANDS = "Commerce commands (server/commerce)"
COMMERCE_EVENTS = "Commerce events (inside `batch`)"
# A WebSocket command's idempotency key: the same rule as idempotency_key, refused with ``bad_key``.
IdempotencyKey = Annotated[
    str,
    Meta(
        pattern=r"\A[A-Za-z0-9_.:-]{1,64}\Z",
        description="idempotency key: the same key answers the first reply",
        extra={"code": Code.BAD_KEY},
    ),
]


def integer(body: dict[str, Any], name: str, low: int, high: int, default: Any = _MISSING) -> int:
    """An integer field within [low, high]; booleans and floats are refused."""
    value = body.get(name, default)
    if value is _MISSING:
        raise bad_request("bad_field", f"{name} is required", field=name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad_request(
            "bad_field", f"{name} must be an integer from {low} to {high}", field=name
        )
    return value


def text(body: dict[str, Any], name: str, max_len: int, default: Any = _MISSING) -> str:
    """A non-empty trimmed string of at most ``max_len`` characters."""
    value = body.get(name, default)
    if value is _MISSING:
        raise bad_request("bad_field", f"{name} is required", field=name)
    if not isinstance(value, str) or (not value.strip() and default is _MISSING):
        raise bad_request("bad_field", f"{name} must be a non-empty string", field=name)
    value = value.strip()
    if len(value) > max_len:
        raise bad_request("bad_field", f"{name} is longer than {max_len} characters", field=name)
    return value


def idempotency_key(body: dict[str, Any], name: str = "key") -> str:
    """The client's idempotency key: 1-64 of A-Z a-z 0-9 _ . : -"""
    value = body.get(name)
    # fullmatch: with match, "$" alone would let "k\n" through
    if not isinstance(value, str) or not KEY_RE.fullmatch(value):
        raise bad_request("bad_key", f"{name} must be 1-64 of A-Z a-z 0-9 _ . : -", field=name)
    return value


def currency(body: dict[str, Any], default: str = "USD") -> str:
    value = body.get("currency", default)
    if not isinstance(value, str) or not CURRENCY_RE.fullmatch(value):
        raise bad_request(
            "bad_field", "currency must be a 3-letter ISO code such as USD", field="currency"
        )
    return value

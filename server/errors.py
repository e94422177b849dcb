"""Errors are values at the edges: every rejected input gets a stable code and a message a client can show."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .textrules import bad_text_field

log = logging.getLogger("liveshop.http")


class ConfigError(Exception):
    """A start-up problem the operator must fix; printed as one line, exit status 2."""


class ApiError(Exception):
    """A rejected request: HTTP status, a machine-readable code and a human message.

    The same codes travel in WebSocket ``error`` messages (see docs/protocol.md).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def bad_request(code: str, message: str, **details: Any) -> ApiError:
    return ApiError(400, code, message, **details)


def not_found(code: str, message: str) -> ApiError:
    return ApiError(404, code, message)


def forbidden(message: str = "your role may not do this") -> ApiError:
    return ApiError(403, "forbidden", message)


def unauthorized(message: str = "a valid token is required") -> ApiError:
    return ApiError(401, "unauthorized", message)


def conflict(code: str, message: str, **details: Any) -> ApiError:
    return ApiError(409, code, message, **details)


# Every error answer is readable by a page on another origin (RFC 9725 §4.1 for WHIP/WHEP;
# the same for the rest of the API): without these a browser reports "Failed to fetch"
# instead of, say, 409 ``not_live``. The API authenticates by bearer token, never by
# cookie, so a wildcard origin leaks nothing.
ERROR_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Allow, Retry-After, WWW-Authenticate",
}
REALM = "liveshop"


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


def www_authenticate(error: str | None = None, description: str | None = None) -> str:
    """A ``WWW-Authenticate: Bearer`` challenge (RFC 6750 §3).

    Without a token in the request the challenge carries no error code (§3.1); with a bad or
    expired one it says ``error="invalid_token"``. Anything answering 401 raises an
    :class:`ApiError` and gets this from :func:`error_middleware`; a handler with another
    scheme or realm (e.g. operator API keys) passes its own ``WWW-Authenticate`` in
    ``ApiError(headers=...)``, which is kept.
    """
    value = f'Bearer realm="{REALM}"'
    if error:
        value += f', error="{error}"'
    if description:
        value += f', error_description="{_quoted(description)}"'
    return value


def _carries_token(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    return header.lower().startswith("bearer ") or "token" in request.query


def error_headers(
    request: web.Request, status: int, message: str = "", headers: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Headers of an error response: the handler's own, CORS, and a Bearer challenge on 401."""
    out = dict(ERROR_CORS)
    out.update(headers or {})
    if status == 401 and not any(k.lower() == "www-authenticate" for k in out):
        if _carries_token(request):
            out["WWW-Authenticate"] = www_authenticate("invalid_token", message)
        else:
            out["WWW-Authenticate"] = www_authenticate()
    return out


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn ApiError and aiohttp's HTTP errors into ``{"error": {"code", "message"}}`` JSON.

    Every 4xx/5xx leaving here, raised or returned, carries :data:`ERROR_CORS` (and a
    Bearer challenge on 401).
    """
    try:
        response = await handler(request)
    except ApiError as exc:
        return web.json_response(
            {"error": exc.to_dict()},
            status=exc.status,
            headers=error_headers(request, exc.status, exc.message, exc.headers),
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == "application/json":
            for key, value in error_headers(request, exc.status, exc.text or "").items():
                exc.headers.setdefault(key, value)
            raise
        code = exc.reason.lower().replace(" ", "_")
        message = exc.text or exc.reason
        return web.json_response(
            {"error": {"code": code, "message": message}},
            status=exc.status,
            headers=error_headers(
                request,
                exc.status,
                message,
                {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")},
            ),
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response(
            {"error": {"code": "internal", "message": "internal server error"}},
            status=500,
            headers=error_headers(request, 500),
        )
    if response.status >= 400 and not response.prepared:
        for key, value in error_headers(request, response.status).items():
            response.headers.setdefault(key, value)
    return response


async def read_json(request: web.Request, max_bytes: int = 64 * 1024) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413 with a code."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "too_large", f"body over {max_bytes} bytes")
    raw = await request.read()
    if len(raw) > max_bytes:
        raise ApiError(413, "too_large", f"body over {max_bytes} bytes")
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise bad_request("bad_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("bad_json", "body must be a JSON object")
    field = bad_text_field(body)
    if field is not None:
        raise bad_request("bad_field", f"{field} is not valid Unicode text", field=field)
    return body

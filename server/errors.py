"""Errors are values at the edges: every rejected input gets a stable code and a message a client can show."""

from __future__ import annotations

import json
import logging
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

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
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


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn ApiError and aiohttp's HTTP errors into ``{"error": {"code", "message"}}`` JSON."""
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response({"error": exc.to_dict()}, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = exc.reason.lower().replace(" ", "_")
        return web.json_response(
            {"error": {"code": code, "message": exc.text or exc.reason}},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response(
            {"error": {"code": "internal", "message": "internal server error"}}, status=500
        )


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

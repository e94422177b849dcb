"""Errors are values at the edges: every rejected input gets a stable code and a message a client can show.

The codes and the WebSocket close codes are declared once, here (:class:`Code`, :class:`Close`),
with their HTTP status and meaning: HTTP (:class:`ApiError`), the WebSocket gateway and the
media relay (``media.errors.MediaError``) raise them, :func:`ws_error` builds every wire
``error`` message, and docs/protocol.md's tables are generated from them. A test fails when
a code is raised anywhere without being declared.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .textrules import bad_text_field

log = logging.getLogger("liveshop.http")


class Code(enum.StrEnum):
    """Every error code liveshop answers with: ``(code, HTTP status, area, meaning)``.

    A ``StrEnum``: members are the plain strings on the wire (``Code.BAD_FIELD == "bad_field"``).
    ``status`` is the HTTP status it is raised with (0: WebSocket only); ``area`` groups the
    docs table.
    """

    status: int
    area: str
    meaning: str

    def __new__(cls, value: str, status: int, area: str, meaning: str) -> Code:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.area = area
        member.meaning = meaning
        return member

    # fmt: off
    # -- WebSocket frames and connecting
    BAD_FRAME = "bad_frame", 0, "ws", "frame is not valid JSON/msgpack, or not an object"
    BAD_TYPE = "bad_type", 0, "ws", "`type` missing or not a string"
    UNKNOWN_TYPE = "unknown_type", 0, "ws", "no such message type"
    FLOOD = "flood", 0, "ws", "too many frames per second on this connection"
    INTERNAL = "internal", 500, "ws", "the server failed; a WebSocket connection stays open"
    UNAUTHORIZED = "unauthorized", 401, "ws", "no or invalid token (on connect: then close 4001)"
    TOKEN_EXPIRED = "token_expired", 401, "ws", "the token has expired (on connect: then close 4001)"
    TOKEN_REVOKED = "token_revoked", 401, "ws", "the user's tokens were revoked (`POST /api/shows/{id}/revoke`): on connect, or sent to open connections before close 4001"
    FORBIDDEN = "forbidden", 403, "ws", "your role may not do this (e.g. a viewer calling `mod.*`), another show's token (on connect: close 4003), another user's order or session"
    SHOW_NOT_FOUND = "show_not_found", 404, "ws", "no such show (on connect: then close 4004)"
    # -- any request
    BAD_FIELD = "bad_field", 400, "any", "a field is missing, of the wrong type or out of range (`field` / `details.field` names it)"
    BAD_JSON = "bad_json", 400, "any", "the HTTP body is not a JSON object"
    TOO_LARGE = "too_large", 413, "any", "the body (or SDP fragment) is too large"
    OPERATOR_REQUIRED = "operator_required", 401, "any", "this needs the operator API key"
    RATE_LIMITED = "rate_limited", 429, "any", "too many requests or chat messages; `retry_after_ms` says when to retry"
    NOT_FOUND = "not_found", 404, "any", "the message, user or file does not exist"
    # -- shows, chat and moderation
    BAD_SHOW_ID = "bad_show_id", 400, "chat", "the show id is malformed"
    BAD_ROLE = "bad_role", 400, "chat", "no such role"
    SHOW_EXISTS = "show_exists", 409, "chat", "a show with this id exists"
    BANNED_WORD = "banned_word", 400, "chat", "the chat text contains a banned word (`word`)"
    MUTED = "muted", 403, "chat", "you are muted until `until` (ms)"
    BANNED = "banned", 403, "chat", "you are banned from this show (on connect: then close 1008)"
    # -- PK battles (server/realtime/pk.py, issue 20; listed with the shows)
    BAD_INVITE = "bad_invite", 403, "chat", "the PK invite is forged, altered, malformed or for another show"
    INVITE_EXPIRED = "invite_expired", 410, "chat", "the PK invite has expired (`--pk-invite-ttl-s`)"
    INVITE_USED = "invite_used", 409, "chat", "the PK invite was used already"
    ALREADY_IN_PK = "already_in_pk", 409, "chat", "the show (`details.show_id`) is already in a PK battle"
    NOT_IN_PK = "not_in_pk", 409, "chat", "the show is not in a PK battle"
    # -- commerce
    BAD_KEY = "bad_key", 400, "commerce", "idempotency key missing or malformed (1-64 of `A-Za-z0-9_.:-`)"
    PRODUCT_NOT_FOUND = "product_not_found", 404, "commerce", "unknown product id"
    SALE_NOT_FOUND = "sale_not_found", 404, "commerce", "unknown sale id"
    ORDER_NOT_FOUND = "order_not_found", 404, "commerce", "unknown order (reservation) id"
    COUPON_NOT_FOUND = "coupon_not_found", 404, "commerce", "unknown coupon id"
    LOTTERY_NOT_FOUND = "lottery_not_found", 404, "commerce", "unknown giveaway id"
    AUCTION_NOT_FOUND = "auction_not_found", 404, "commerce", "unknown auction id"
    GROUP_BUY_NOT_FOUND = "group_buy_not_found", 404, "commerce", "unknown group-buy deal id"
    POLL_NOT_FOUND = "poll_not_found", 404, "commerce", "unknown poll id"
    OUT_OF_STOCK = "out_of_stock", 409, "commerce", "a sale (auction, deal) on a product without stock"
    INSUFFICIENT_STOCK = "insufficient_stock", 409, "commerce", "the product has less stock than asked (`stock`)"
    PIN_LIMIT = "pin_limit", 409, "commerce", "three products are already pinned"
    ORDER_NOT_PAYABLE = "order_not_payable", 409, "commerce", "the order is not `reserved` any more (`details.order_status`)"
    ORDER_NOT_CANCELLABLE = "order_not_cancellable", 409, "commerce", "the order is not `reserved` any more (`details.order_status`)"
    PAYMENT_IN_PROGRESS = "payment_in_progress", 409, "commerce", "another payment of this order is still running"
    COUPON_NOT_CLAIMED = "coupon_not_claimed", 409, "commerce", "the coupon was not claimed by this user"
    COUPON_USED = "coupon_used", 409, "commerce", "the coupon was used already"
    COUPON_EXPIRED = "coupon_expired", 409, "commerce", "the coupon has expired"
    COUPON_NOT_APPLICABLE = "coupon_not_applicable", 409, "commerce", "the coupon's currency is not the order's"
    PAYMENT_UNAVAILABLE = "payment_unavailable", 502, "commerce", "the payment provider did not answer; retry with the same key"
    LOTTERY_CLOSED = "lottery_closed", 409, "commerce", "the giveaway's entry window is closed"
    AUTOMATIC_ENTRY = "automatic_entry", 409, "commerce", "entry is automatic for this giveaway"
    NOT_DRAWN = "not_drawn", 409, "commerce", "the giveaway has not been drawn yet"
    DRAW_IN_PROGRESS = "draw_in_progress", 409, "commerce", "the giveaway is being drawn"
    UNAVAILABLE = "unavailable", 503, "commerce", "Redis could not be reached for a buy (bid, vote, join); retry with the same key"
    # -- media (WHIP/WHEP, recording, HLS)
    BAD_SDP = "bad_sdp", 400, "media", "the body is not a usable SDP offer"
    BAD_SDPFRAG = "bad_sdpfrag", 400, "media", "the trickle-ICE fragment is malformed"
    NOT_NEGOTIATED = "not_negotiated", 409, "media", "the session has no negotiated ICE state yet"
    ETAG_MISMATCH = "etag_mismatch", 412, "media", "If-Match does not name the ICE session"
    ICE_RESTART_UNSUPPORTED = "ice_restart_unsupported", 422, "media", "ICE restart is not supported"
    NO_COMMON_CODEC = "no_common_codec", 406, "media", "no codec in common with the offer"
    NO_COMMON_MEDIA = "no_common_media", 406, "media", "the offer has none of the publisher's media"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415, "media", "the body must be application/sdp"
    NOT_LIVE = "not_live", 409, "media", "the show is not live (here)"
    ALREADY_LIVE = "already_live", 409, "media", "the show already has a publisher"
    SHOW_FULL = "show_full", 503, "media", "too many viewers on this node"
    NO_SESSION = "no_session", 404, "media", "no such WHIP/WHEP session"
    EDGE_NOT_READY = "edge_not_ready", 503, "media", "the edge of this show is still connecting to its origin"
    RECORDING_DISABLED = "recording_disabled", 501, "media", "recording is not configured"
    ALREADY_RECORDING = "already_recording", 409, "media", "the show is already being recorded"
    NOT_RECORDING = "not_recording", 409, "media", "the show is not being recorded"
    BAD_NAME = "bad_name", 400, "media", "not a recording name"
    NO_RECORDING = "no_recording", 404, "media", "no such recording"
    WORKER_NOT_CONFIGURED = "worker_not_configured", 503, "media", "the media worker is not configured"
    WORKER_LOST = "worker_lost", 503, "media", "the media worker holding the session stopped"
    WORKER_TIMEOUT = "worker_timeout", 504, "media", "the media worker did not answer in time"
    WORKER_ERROR = "worker_error", 500, "media", "the media worker failed"
    NO_PROCESS = "no_process", 404, "media", "the process holding the session is gone"
    PROCESS_TIMEOUT = "process_timeout", 504, "media", "the process holding the session did not answer in time"
    PROCESS_ERROR = "process_error", 500, "media", "the process holding the session failed"
    HLS_DISABLED = "hls_disabled", 404, "media", "HLS is not enabled"
    HLS_UNAVAILABLE = "hls_unavailable", 503, "media", "the HLS packager is not available"
    HLS_TIMEOUT = "hls_timeout", 504, "media", "the HLS segment did not appear in time"
    BAD_HLS_QUERY = "bad_hls_query", 400, "media", "a malformed HLS (LL-HLS) query"
    NO_STREAM = "no_stream", 404, "media", "no HLS stream for this show"
    NO_SUCH_FILE = "no_such_file", 404, "media", "no such HLS file"
    # -- co-hosts (issue 20, server/cohost.py)
    COHOST_LIVE = "cohost_live", 409, "media", "another co-host is live in the show (one at a time)"
    NO_COHOST = "no_cohost", 404, "media", "no co-host is live in the show (nothing to remove)"

    # -- shoppable replay (server/insight/replay.py)
    REPLAY_NOT_FOUND = "replay_not_found", 404, "media", "no such replay, or it is not published"
    REPLAY_FILE_MISSING = "replay_file_missing", 404, "media", "the replay's file is not on this server"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable", 416, "media", "the Range starts past the end, or is several ranges or malformed"
    NOT_IN_REPLAY = "not_in_replay", 409, "commerce", "the replay never showed this product"
    # fmt: on


class Close(enum.IntEnum):
    """Every WebSocket close code the server sends, with its meaning (RFC 6455 §7.4 and 4000+)."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> Close:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    # fmt: off
    NORMAL = 1000, "normal closure"
    GOING_AWAY = 1001, "server going away (shutdown/restart): reconnect with `since`"
    PROTOCOL_ERROR = 1002, "protocol error: a client frame that is not masked (RFC 6455 §5.1), or a malformed frame"
    POLICY_VIOLATION = 1008, "policy violation: repeated bad input, or banned from the show"
    MESSAGE_TOO_BIG = 1009, "message over 64 KiB (65,536 bytes is allowed, 65,537 is not)"
    INTERNAL_ERROR = 1011, "internal error while joining (retry with backoff)"
    TRY_AGAIN_LATER = 1013, "try again later: the connection could not keep up (slow consumer)"
    BAD_TOKEN = 4001, "bad, expired or revoked token (the upgrade succeeds, an `error` with code `unauthorized`/`token_expired`/`token_revoked` precedes the close)"
    WRONG_SHOW = 4003, "token is for another show"
    NO_SUCH_SHOW = 4004, "no such show"
    # fmt: on


# Why a WebSocket join is refused → how the connection is closed (after one ``error``).
JOIN_CLOSE: dict[str, Close] = {
    Code.UNAUTHORIZED: Close.BAD_TOKEN,
    Code.TOKEN_EXPIRED: Close.BAD_TOKEN,
    Code.TOKEN_REVOKED: Close.BAD_TOKEN,
    Code.FORBIDDEN: Close.WRONG_SHOW,
    Code.SHOW_NOT_FOUND: Close.NO_SUCH_SHOW,
    Code.BANNED: Close.POLICY_VIOLATION,
}


class ConfigError(Exception):
    """A start-up problem the operator must fix; printed as one line, exit status 2."""


class CodedError(Exception):
    """A rejection with a code from :class:`Code`: HTTP status, code, human message, details.

    :class:`ApiError` (HTTP and WebSocket) and ``media.errors.MediaError`` (the relay) are the two
    kinds; both reach clients as ``{"code", "message"[, "details"]}``.
    """

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The HTTP body's ``error`` object."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def ws_error(
    code: str,
    message: str,
    request_id: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The wire ``error`` message: ``{type, id, code, message}``; any details appear both at the
    top level (``retry_after_ms``, ``field``, …) and inside ``details`` (docs/protocol.md)."""
    error: dict[str, Any] = {"type": "error", "id": request_id, "code": code, "message": message}
    if details:
        error.update(details)
        error["details"] = dict(details)
    return error


def ws_error_of(exc: CodedError, request_id: int | None = None) -> dict[str, Any]:
    """The wire ``error`` for a raised :class:`CodedError`."""
    return ws_error(exc.code, exc.message, request_id, exc.details)


class ApiError(CodedError):
    """A rejected request: HTTP status, a machine-readable code and a human message.

    The same codes travel in WebSocket ``error`` messages (:func:`ws_error_of`, docs/protocol.md).
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
        super().__init__(status, code, message, **details)
        self.headers = dict(headers or {})


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

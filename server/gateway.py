"""The WebSocket gateway: ``GET /ws/{show_id}``: framing, auth, per-connection limits, dispatch.

It knows the wire (subprotocols, frames, close codes) and who is talking; what a message *does*
lives in the services (chat, likes, moderation, and handlers other parts register in
``app[WS_HANDLERS]``). Delivery to clients goes through the show's hub (``server.hub``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from . import chat, insight, likes, moderation, snapshot
from .access import limit_ws_connects
from .appkeys import SETTINGS, WS_HANDLERS
from .auth import Claims, verify_for
from .connection import Connection
from .errors import ApiError
from .hub import HUBS
from .protocol import (
    CODECS,
    JSON,
    MAX_FRAME_BYTES,
    MSGPACK,
    SUBPROTOCOLS,
    ModBan,
    ModDelete,
    ModMute,
    ModPin,
    ModUnban,
    ModUnmute,
    ModUnpin,
    ProtocolError,
    check_text,
    decode,
    request_id,
    validate,
)
from .protocol import Chat as ChatMsg
from .protocol import Like as LikeMsg
from .ratelimit import TokenBucket
from .shows import get_show
from .snapshot import SnapshotRequest
from .ws_guard import GuardedWebSocketResponse
from .ws_metrics import WS_CLOSES, WS_CONNECTIONS, WS_CONNECTS, WS_ERRORS, WS_MESSAGES_IN

log = logging.getLogger("liveshop.ws")

FRAMES_PER_S = 30.0  # inbound frames per viewer connection (flood guard; staff are trusted)
FRAMES_BURST = 60.0
STRIKES_PER_S = 0.5  # forgiven bad inputs per second
STRIKES_BURST = 10.0  # bad inputs tolerated in a row before closing 1008
STRIKE_CODES = frozenset(
    {"bad_frame", "bad_type", "unknown_type", "bad_field", "forbidden", "flood"}
)
KNOWN_TYPES = frozenset({"chat", "like", "ping", "mod.delete", "mod.mute", "mod.unmute", "mod.ban",
                         "mod.unban", "mod.pin", "mod.unpin"})  # fmt: skip
HEARTBEAT_S = 60.0  # WebSocket ping interval; a peer silent for 1.5x this is dropped
JOIN_SLOTS = web.AppKey("ws_join_slots", asyncio.Semaphore)
DISPATCH_SLOTS = web.AppKey("ws_dispatch_slots", asyncio.Semaphore)
AUTH_CLOSE = {
    "unauthorized": 4001,
    "token_expired": 4001,
    "forbidden": 4003,
    "show_not_found": 4004,
}


async def _reject(
    ws: web.WebSocketResponse, exc: ApiError, close_code: int
) -> web.WebSocketResponse:
    """Tell the client why (one ``error``) and close with ``close_code``."""
    message = {"type": "error", "id": None, "code": exc.code, "message": exc.message}
    WS_CLOSES.labels(str(close_code)).inc()
    try:
        if ws.ws_protocol == MSGPACK.name:
            await ws.send_bytes(MSGPACK.encode(message))
        else:
            await ws.send_str(JSON.encode(message).decode())
        await ws.close(code=close_code, message=exc.code.encode())
    except (ConnectionError, RuntimeError):  # the peer is already gone
        pass
    return ws


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """One client session: welcome (+ history or recovery), then messages until close."""
    app = request.app
    show_id = request.match_info["show_id"]
    ws = GuardedWebSocketResponse(  # unmasked client frames close 1002 (RFC 6455 §5.1)
        protocols=SUBPROTOCOLS,
        max_msg_size=MAX_FRAME_BYTES + 1,  # aiohttp refuses size >= max: a 64 KiB frame is allowed
        compress=False,
        heartbeat=HEARTBEAT_S,
        timeout=5,
    )
    await ws.prepare(request)
    codec = CODECS.get(ws.ws_protocol or "", JSON)
    transport = request.transport
    if transport is None:
        return ws
    hubs = app[HUBS]
    hub = None
    conn: Connection | None = None
    try:
        async with app[JOIN_SLOTS]:  # a join storm queues here instead of exhausting the Redis pool
            claims = verify_for(app, request.query.get("token", ""), show_id)
            show = await get_show(app, show_id)
            conn = Connection(ws, transport, codec, claims)  # type: ignore[arg-type]
            hub = await hubs.join(show_id, conn)
            await _welcome(app, conn, show, request.query.get("since"), request.query.get("epoch"))
    except ApiError as exc:
        if hub is not None and conn is not None:
            hubs.leave(hub, conn)
        close_code = 1008 if exc.code == "banned" else AUTH_CLOSE.get(exc.code, 4001)
        return await _reject(ws, exc, close_code)
    except Exception:
        log.exception("WebSocket join failed")
        if hub is not None and conn is not None:
            hubs.leave(hub, conn)
        WS_CLOSES.labels("1011").inc()
        await ws.close(code=1011, message=b"internal error")
        return ws
    WS_CONNECTS.labels(codec.name).inc()
    WS_CONNECTIONS.inc()
    await insight.joined(app, show_id, conn.claims)
    try:
        await _serve(app, ws, conn)
    except Exception:  # never let an upgraded socket fall into the HTTP error path
        log.exception("WebSocket session failed")
    finally:
        WS_CONNECTIONS.dec()
        hubs.leave(hub, conn)
        await insight.left(app, show_id, conn.claims)
    return ws


async def _welcome(
    app: web.Application,
    conn: Connection,
    show: dict[str, Any],
    since: str | None,
    client_epoch: str | None,
) -> None:
    """Write the welcome and the first batch (recent or recovered chat), then go live without gap or overlap.

    The show's state is one join snapshot (one pipelined round trip; each service reads and
    parses its own part): joins must stay cheap in a join storm.
    """
    claims = conn.claims
    snap = await snapshot.take(
        app, SnapshotRequest(show["id"], claims.user_id, since or None, client_epoch)
    )
    settings = app[SETTINGS]
    welcome = {
        "type": "welcome",
        "user": {"id": claims.user_id, "name": claims.name, "role": claims.role},
        "show": show,
        **snap.fields,
        "recovered": snap.recovered,
        "codec": conn.codec.name,
        "limits": {
            "chat_max_chars": settings.chat_max_chars,
            "chat_rate": settings.chat_rate,
            "chat_burst": settings.chat_burst,
            "max_frame_bytes": MAX_FRAME_BYTES,
        },
    }
    conn.send_message(welcome)
    conn.send_message({"type": "batch", "events": snap.events})
    conn.go_live(snap.floor)


async def _serve(app: web.Application, ws: web.WebSocketResponse, conn: Connection) -> None:
    frames = TokenBucket(FRAMES_PER_S, FRAMES_BURST)
    strikes = TokenBucket(STRIKES_PER_S, STRIKES_BURST)
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            rid: int | None = None
            try:
                if not conn.staff and not frames.take():
                    raise ProtocolError("flood", "too many messages; slow down")
                message = decode(msg.data)
                rid = request_id(message)
                check_text(message, msg.data)
                kind = message["type"]
                WS_MESSAGES_IN.labels(
                    kind if kind in KNOWN_TYPES or kind in app[WS_HANDLERS] else "other"
                ).inc()
                result = await dispatch(app, conn.claims, message)
                if rid is not None:
                    conn.send_message({**(result or {}), "type": "reply", "id": rid})
            except (ProtocolError, ApiError) as exc:
                code = exc.code
                error: dict[str, Any] = {
                    "type": "error",
                    "id": rid,
                    "code": code,
                    "message": exc.message,
                }
                if isinstance(exc, ApiError) and exc.details:
                    error.update(exc.details)
                    error["details"] = exc.details
                elif isinstance(exc, ProtocolError) and exc.field:
                    error["field"] = exc.field
                    error["details"] = {"field": exc.field}
                WS_ERRORS.labels(code).inc()
                conn.send_message(error)
                if code in STRIKE_CODES and not strikes.take():
                    WS_CLOSES.labels("1008").inc()
                    conn.close(1008, "too many bad messages")
                    break
            except Exception:
                log.exception("message handling failed")
                WS_ERRORS.labels("internal").inc()
                conn.send_message(
                    {"type": "error", "id": rid, "code": "internal", "message": "internal error"}
                )
        elif msg.type == WSMsgType.ERROR:
            WS_CLOSES.labels(str(ws.close_code or 1011)).inc()
            break
    if conn.close_task is not None:
        # Let the close handshake started by the connection finish before the handler returns.
        await conn.close_task


async def dispatch(
    app: web.Application, claims: Claims, message: dict[str, Any]
) -> dict[str, Any] | None:
    """Run one decoded client message; returns reply fields or raises ApiError/ProtocolError."""
    kind = message["type"]
    handler = app[WS_HANDLERS].get(kind)
    if handler is not None and kind not in KNOWN_TYPES:
        return await handler(app, claims, message)
    if kind.startswith("mod.") and kind in KNOWN_TYPES and not claims.is_staff:
        raise ApiError(403, "forbidden", f"role '{claims.role}' may not use {kind}")
    body = validate(message)
    async with app[DISPATCH_SLOTS]:
        return await _run(app, claims, kind, body)


async def _run(app: web.Application, claims: Claims, kind: str, body: Any) -> dict[str, Any] | None:
    """Run one validated message of the real-time layer."""
    if isinstance(body, ChatMsg):
        sent = await chat.send(app, claims, body.text)
        await insight.action(app, claims.show_id, "chatted", claims.user_id)
        return sent
    if isinstance(body, LikeMsg):
        await likes.add_likes(app, claims.show_id, body.count)
        await insight.action(app, claims.show_id, "liked", claims.user_id)
        return {}
    if kind == "ping":
        return {"ts": int(time.time() * 1000)}
    if isinstance(body, ModDelete):
        return await moderation.delete(app, claims, body.message_id)
    if isinstance(body, ModMute):
        return await moderation.mute(app, claims, body.user_id, body.minutes)
    if isinstance(body, ModUnmute):
        return await moderation.unmute(app, claims, body.user_id)
    if isinstance(body, ModBan):
        return await moderation.ban(app, claims, body.user_id)
    if isinstance(body, ModUnban):
        return await moderation.unban(app, claims, body.user_id)
    if isinstance(body, ModPin):
        return await moderation.pin(app, claims, body.message_id)
    if isinstance(body, ModUnpin):
        return await moderation.unpin(app, claims)
    raise ProtocolError("unknown_type", f"unknown message type {kind!r}")


async def _on_shutdown(app: web.Application) -> None:
    """Close every WebSocket with 1001 (going away) so clients reconnect elsewhere."""
    conns = list(app[HUBS].connections)
    for conn in conns:
        conn.close(1001, "server shutdown")
    if conns:
        WS_CLOSES.labels("1001").inc(len(conns))
        await asyncio.sleep(0.2)


def setup(app: web.Application) -> None:
    # Both bound the real-time layer's concurrent Redis work per node below redis-py's
    # default pool size (100); commands registered by other parts are not throttled here.
    app[JOIN_SLOTS] = asyncio.Semaphore(32)
    app[DISPATCH_SLOTS] = asyncio.Semaphore(48)
    app.router.add_get("/ws/{show_id}", limit_ws_connects(handle_ws))  # per-IP rate and cap
    app.on_shutdown.append(_on_shutdown)

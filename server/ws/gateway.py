"""The WebSocket gateway: ``GET /ws/{show_id}``: framing, auth, per-connection limits, dispatch.

It knows the wire (subprotocols, frames, close codes) and who is talking; what a message *does*
lives in the services, whose commands (schema, handler, roles) are in the app's registry
(``server.protocol``, ``app[COMMANDS]``): the gateway parses each frame with it and runs the
handler. Delivery to clients goes through the show's hub (``server.ws.hub``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from .. import insight
from ..access import limit_ws_connects
from ..appkeys import COMMANDS, SETTINGS
from ..auth import Claims, verify_for
from ..errors import JOIN_CLOSE, ApiError, Close, Code, CodedError, ws_error, ws_error_of
from ..protocol import (
    CODECS,
    JSON,
    MAX_FRAME_BYTES,
    MSGPACK,
    SUBPROTOCOLS,
    Command,
    Message,
    ProtocolError,
    Rejected,
    register,
)
from ..protocol.messages import EVENTS, SERVER_MESSAGES
from ..ratelimit import TokenBucket
from ..realtime import chat, likes, moderation
from ..shows import get_show
from . import snapshot
from .connection import Connection
from .guard import GuardedWebSocketResponse
from .hub import HUBS
from .metrics import WS_CLOSES, WS_CONNECTIONS, WS_CONNECTS, WS_ERRORS, WS_MESSAGES_IN
from .snapshot import SnapshotRequest

log = logging.getLogger("liveshop.ws")

FRAMES_PER_S = 30.0  # inbound frames per viewer connection (flood guard; staff are trusted)
FRAMES_BURST = 60.0
STRIKES_PER_S = 0.5  # forgiven bad inputs per second
STRIKES_BURST = 10.0  # bad inputs tolerated in a row before closing 1008
STRIKE_CODES = frozenset(
    {Code.BAD_FRAME, Code.BAD_TYPE, Code.UNKNOWN_TYPE, Code.BAD_FIELD, Code.FORBIDDEN, Code.FLOOD}
)
HEARTBEAT_S = 60.0  # WebSocket ping interval; a peer silent for 1.5x this is dropped
JOIN_SLOTS = web.AppKey("ws_join_slots", asyncio.Semaphore)
DISPATCH_SLOTS = web.AppKey("ws_dispatch_slots", asyncio.Semaphore)


async def _reject(
    ws: web.WebSocketResponse, exc: ApiError, close_code: int
) -> web.WebSocketResponse:
    """Tell the client why (one ``error``) and close with ``close_code``."""
    message = ws_error(exc.code, exc.message)
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
        close_code = JOIN_CLOSE.get(exc.code, Close.BAD_TOKEN)
        return await _reject(ws, exc, close_code)
    except Exception:
        log.exception("WebSocket join failed")
        if hub is not None and conn is not None:
            hubs.leave(hub, conn)
        WS_CLOSES.labels(str(int(Close.INTERNAL_ERROR))).inc()
        await ws.close(code=Close.INTERNAL_ERROR, message=b"internal error")
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
    registry = app[COMMANDS]
    # a co-host given moderator rights (issue 20) may send what moderators may
    role = "moderator" if conn.claims.moderator else conn.claims.role
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            rid: int | None = None
            try:
                if not conn.staff and not frames.take():
                    raise ProtocolError(Code.FLOOD, "too many messages; slow down")
                try:
                    command, body, rid = registry.parse(msg.data, role)
                except Rejected as refused:
                    rid = refused.request_id
                    if refused.kind is not None:
                        WS_MESSAGES_IN.labels(refused.kind).inc()
                    raise refused.error from None
                WS_MESSAGES_IN.labels(command.type).inc()
                result = await dispatch(app, conn.claims, command, body)
                if rid is not None:
                    conn.send_message({**(result or {}), "type": "reply", "id": rid})
            except CodedError as exc:
                code = exc.code
                WS_ERRORS.labels(code).inc()
                conn.send_message(ws_error_of(exc, rid))
                if code in STRIKE_CODES and not strikes.take():
                    WS_CLOSES.labels(str(int(Close.POLICY_VIOLATION))).inc()
                    conn.close(Close.POLICY_VIOLATION, "too many bad messages")
                    break
            except Exception:
                log.exception("message handling failed")
                WS_ERRORS.labels(Code.INTERNAL).inc()
                conn.send_message(ws_error(Code.INTERNAL, "internal error", rid))
        elif msg.type == WSMsgType.ERROR:
            WS_CLOSES.labels(str(ws.close_code or 1011)).inc()
            break
    if conn.close_task is not None:
        # Let the close handshake started by the connection finish before the handler returns.
        await conn.close_task


async def dispatch(
    app: web.Application, claims: Claims, command: Command, body: Message
) -> dict[str, Any] | None:
    """Run one parsed command (roles already checked); returns reply fields or raises ApiError."""
    if command.bounded:
        async with app[DISPATCH_SLOTS]:
            return await command.handler(app, claims, body)
    return await command.handler(app, claims, body)


class Ping(Message, tag="ping"):
    """Application-level ping. Replied with `{ts}` (server time, ms)."""


async def on_ping(app: web.Application, claims: Claims, body: Ping) -> dict[str, Any]:
    return {"ts": int(time.time() * 1000)}


# The real-time layer's commands, in the order docs/protocol.md lists them.
COMMANDS_REALTIME: tuple[Command, ...] = (
    *chat.COMMANDS,
    *likes.COMMANDS,
    Command(Ping, on_ping, bounded=True),
    *moderation.COMMANDS,
)


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
    register(app, "Client → server messages", COMMANDS_REALTIME)
    register(app, "Server → client messages", events=SERVER_MESSAGES)
    register(app, "Events (inside `batch`)", events=EVENTS)
    app.router.add_get("/ws/{show_id}", limit_ws_connects(handle_ws))  # per-IP rate and cap
    app.on_shutdown.append(_on_shutdown)

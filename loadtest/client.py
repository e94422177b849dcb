"""Clients of liveshop's public protocols: HTTP JSON calls and the ``liveshop.msgpack`` WebSocket.

One ``ShowSocket`` is one viewer connection. Thousands share one event loop and one
``aiohttp.ClientSession``; the receive loop decodes each binary frame once and hands batched
events to a callback, replies to the request's future.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import aiohttp
import msgpack

SUBPROTOCOL = "liveshop.msgpack"


class ApiError(Exception):
    """A non-2xx HTTP answer: status, code and message from the server's error body."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", body) if isinstance(body, dict) else {}
        self.status = status
        self.code = str(error.get("code", status)) if isinstance(error, dict) else str(status)
        self.body = body
        super().__init__(f"HTTP {status}: {body}")


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    json: Any = None,
) -> Any:
    """One JSON request; returns the decoded body or raises ApiError."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with session.request(method, url, json=json, headers=headers) as resp:
        body = await resp.json(content_type=None) if resp.status != 204 else {}
        if resp.status >= 300:
            raise ApiError(resp.status, body)
        return body


async def create_show(
    session: aiohttp.ClientSession, base: str, title: str, api_key: str | None = None
) -> tuple[str, str]:
    """POST /api/shows with the operator API key (``--api-key``) → (show id, host token)."""
    body = await call(
        session,
        "POST",
        f"{base}/api/shows",
        api_key,
        {"title": title, "host_name": "Load tester"},
    )
    return str(body["show"]["id"]), str(body["host_token"])


async def mint_token(
    session: aiohttp.ClientSession, base: str, show_id: str, host_token: str, role: str, name: str
) -> tuple[str, str]:
    """Host mints a viewer or moderator token: POST /api/shows/{id}/tokens → (token, user id)."""
    body = await call(
        session,
        "POST",
        f"{base}/api/shows/{show_id}/tokens",
        host_token,
        {"role": role, "name": name},
    )
    return str(body["token"]), str(body["user_id"])


class ShowSocket:
    """One WebSocket connection to ``/ws/{show_id}`` speaking ``liveshop.msgpack``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        show_id: str,
        token: str,
        on_events: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.session = session
        self.url = base_url.replace("http", "ws", 1) + f"/ws/{show_id}"
        self.token = token
        self.on_events = on_events
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.welcome: dict[str, Any] = {}
        self.close_code: int | None = None
        self.unsolicited_errors: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, wait_s: float = 30.0) -> dict[str, Any]:
        """Open the socket and wait for ``welcome``; raises ApiError (status 0, the server's code) on refusal."""
        self.ws = await self.session.ws_connect(
            self.url,
            params={"token": self.token},
            protocols=(SUBPROTOCOL,),
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5),
            autoping=True,
            heartbeat=None,
            max_msg_size=1 << 20,
        )
        first = await asyncio.wait_for(self.ws.receive(), wait_s)
        frame = self._decode(first)
        if not frame or frame.get("type") != "welcome":
            await self.ws.close()
            code = frame.get("code") if frame else f"closed_{self.ws.close_code}"
            raise ApiError(0, {"error": {"code": code, "message": "no welcome"}})
        self.welcome = frame
        self._reader = asyncio.ensure_future(self._read())
        return frame

    @staticmethod
    def _decode(msg: aiohttp.WSMessage) -> dict[str, Any] | None:
        if msg.type == aiohttp.WSMsgType.BINARY:
            return msgpack.unpackb(msg.data, raw=False)  # type: ignore[no-any-return]
        if msg.type == aiohttp.WSMsgType.TEXT:
            import json

            return json.loads(msg.data)  # type: ignore[no-any-return]
        return None

    async def _read(self) -> None:
        assert self.ws is not None
        ws = self.ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                ):
                    break
                if msg.type == aiohttp.WSMsgType.ERROR:
                    break
                frame = self._decode(msg)
                if not frame:
                    continue
                kind = frame.get("type")
                if kind == "batch":
                    if self.on_events:
                        self.on_events(frame.get("events") or [])
                elif kind in ("reply", "error"):
                    request_id = frame.get("id")
                    fut = (
                        self._pending.pop(request_id, None) if isinstance(request_id, int) else None
                    )
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                    elif kind == "error":
                        self.unsolicited_errors.append(frame)
        finally:
            self.close_code = ws.close_code
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_result(
                        {"type": "error", "code": "closed", "message": f"closed {ws.close_code}"}
                    )
            self._pending.clear()

    @property
    def reader(self) -> asyncio.Task[None] | None:
        """The receive task: done when the connection has closed."""
        return self._reader

    @property
    def closed(self) -> bool:
        return self._reader is None or self._reader.done()

    async def send(self, kind: str, **fields: Any) -> None:
        """Fire and forget (no id: no reply; errors still arrive)."""
        assert self.ws is not None
        await self.ws.send_bytes(msgpack.packb({"type": kind, **fields}))

    def request_nowait(self, kind: str, **fields: Any) -> asyncio.Future[dict[str, Any]]:
        """Send with an id; the future resolves to the ``reply`` or ``error`` frame."""
        assert self.ws is not None
        request_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        payload = msgpack.packb({"type": kind, "id": request_id, **fields})
        asyncio.ensure_future(self._send_bytes(payload, request_id))
        return fut

    async def _send_bytes(self, payload: bytes, request_id: int) -> None:
        assert self.ws is not None
        try:
            await self.ws.send_bytes(payload)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            fut = self._pending.pop(request_id, None)
            if fut is not None and not fut.done():
                fut.set_result({"type": "error", "code": "send_failed", "message": str(exc)})

    async def request(self, kind: str, wait_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send with an id and wait for its reply or error frame."""
        fut = self.request_nowait(kind, **fields)
        try:
            return await asyncio.wait_for(fut, wait_s)
        except TimeoutError:
            return {"type": "error", "code": "timeout", "message": f"no answer in {wait_s} s"}

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            try:
                await asyncio.wait_for(self.ws.close(), 2)
            except (TimeoutError, ConnectionError, RuntimeError):
                pass
        if self._reader:
            self._reader.cancel()

"""Helpers for real-time tests: a small protocol client over aiohttp's WebSocket client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp.test_utils import TestClient


class WsClient:
    """One protocol session: decodes frames, flattens batches into ``events``, matches replies."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, codec: str) -> None:
        self.ws = ws
        self.codec = codec
        self.welcome: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.replies: dict[int, dict[str, Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.frames = 0
        self._next_id = 0
        self._close_frame_code: int | None = None

    @property
    def close_code(self) -> int | None:
        """The code in the server's close frame (what a browser reports).

        aiohttp's ``ws.close_code`` turns into 1006 when the server drops TCP right after its
        close frame, before our reply is written — which aiohttp's server does when it closes a
        socket that another task is reading (RFC 6455 §7.1.1 lets the server close TCP first).
        """
        return self._close_frame_code if self._close_frame_code is not None else self.ws.close_code

    async def send(self, message: dict[str, Any]) -> None:
        if self.codec == "liveshop.msgpack":
            await self.ws.send_bytes(msgpack.packb(message))
        else:
            await self.ws.send_json(message)

    async def _read(self, wait_s: float) -> dict[str, Any] | None:
        msg = await self.ws.receive(timeout=wait_s)
        if msg.type == aiohttp.WSMsgType.BINARY:
            data = msgpack.unpackb(msg.data)
        elif msg.type == aiohttp.WSMsgType.TEXT:
            data = __import__("json").loads(msg.data)
        else:
            if msg.type == aiohttp.WSMsgType.CLOSE:
                self._close_frame_code = msg.data
            return None
        self.frames += 1
        kind = data.get("type")
        if kind == "welcome":
            self.welcome = data
        elif kind == "batch":
            self.events.extend(data["events"])
        elif kind == "reply":
            self.replies[data["id"]] = data
        elif kind == "error":
            self.errors.append(data)
            if data.get("id") is not None:
                self.replies[data["id"]] = data
        return data

    async def pump(self, wait_s: float = 0.2) -> None:
        """Read whatever arrives within ``wait_s``."""
        try:
            while True:
                if await self._read(wait_s) is None:
                    return
        except TimeoutError:
            return

    async def until(self, predicate: Callable[[WsClient], bool], wait_s: float = 5.0) -> None:
        deadline = time.monotonic() + wait_s
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out; events={self.events[-5:]} errors={self.errors[-3:]}"
                )
            try:
                if await self._read(left) is None:
                    if predicate(self):
                        return
                    raise AssertionError(
                        f"connection closed ({self.close_code}); errors={self.errors[-3:]}"
                    )
            except TimeoutError:
                pass

    async def request(self, message: dict[str, Any], wait_s: float = 5.0) -> dict[str, Any]:
        """Send with a fresh id and wait for its reply or error."""
        self._next_id += 1
        rid = self._next_id
        await self.send({**message, "id": rid})
        await self.until(lambda c: rid in c.replies, wait_s)
        return self.replies[rid]

    def chats(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "chat"]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    async def close(self) -> None:
        await self.ws.close()


async def open_ws(
    session: aiohttp.ClientSession | TestClient,
    url: str,
    codec: str = "liveshop.json",
) -> WsClient:
    """Connect and read the welcome and the first batch."""
    ws = await session.ws_connect(url, protocols=(codec,), max_msg_size=0)
    client = WsClient(ws, codec)
    await client.until(lambda c: bool(c.welcome), 5)
    await client._read(5)  # the first batch (recent or recovered chat)
    return client


@pytest.fixture
async def connect(client: TestClient) -> Any:
    """``await connect(show_id, token, codec=..., since=..., epoch=...)`` against the in-process app."""
    opened: list[WsClient] = []

    async def make(
        show_id: str, token: str, codec: str = "liveshop.json", **query: str
    ) -> WsClient:
        extra = "".join(f"&{k}={v}" for k, v in query.items())
        ws = await open_ws(client, f"/ws/{show_id}?token={token}{extra}", codec)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        if not ws.ws.closed:
            await asyncio.wait_for(ws.ws.close(), 2)


@pytest.fixture
def mint(client: TestClient) -> Callable[..., Awaitable[tuple[str, str]]]:
    """``await mint(show_id, host_token, role, name)`` → (token, user_id)."""

    async def make(
        show_id: str, host_token: str, role: str = "viewer", name: str = "V"
    ) -> tuple[str, str]:
        resp = await client.post(
            f"/api/shows/{show_id}/tokens", json={"role": role, "name": name},
            headers={"Authorization": f"Bearer {host_token}"},
        )  # fmt: skip
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        return body["token"], body["user_id"]

    return make

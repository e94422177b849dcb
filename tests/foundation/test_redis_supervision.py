"""The embedded Redis is supervised: after ``kill -9`` the node restarts it on its AOF and goes on;
when it cannot come back the node exits non-zero. Real server process, real redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import http_json
from tests.realtime.conftest import open_ws

pytestmark = pytest.mark.slow

RECOVERY_BOUND_S = 15.0  # "within seconds": the supervisor polls every 0.2 s, Redis loads the AOF


def _redis_pid(data_dir: Path) -> int:
    return int((data_dir / "redis.pid").read_text())


def _guest(url: str) -> str:
    """A guest token for the demo show (which the server creates itself just after listening)."""
    deadline = time.monotonic() + 15
    while True:
        status, body = http_json(url + "/api/shows/demo/guest", "POST", {"name": "Kim"})
        if status == 201:
            return str(body["token"])
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


async def _chat_until_ok(viewer: Any, text: str, bound_s: float) -> float:
    """Send chat until it is accepted; returns how long that took."""
    started = time.monotonic()
    while True:
        reply = await viewer.request({"type": "chat", "text": text}, wait_s=bound_s)
        if reply["type"] == "reply":
            return time.monotonic() - started
        assert time.monotonic() - started < bound_s, reply
        await asyncio.sleep(0.2)


async def test_kill_9_of_embedded_redis_recovers_within_seconds(server_proc: Any) -> None:
    node = server_proc("--demo", "--chat-rate", "50", "--chat-burst", "50")
    token = _guest(node.url)
    ws_url = node.url.replace("http", "ws", 1) + f"/ws/demo?token={token}"
    async with aiohttp.ClientSession() as session:
        viewer = await open_ws(session, ws_url)
        assert (await viewer.request({"type": "chat", "text": "before"}))["type"] == "reply"
        old_pid = _redis_pid(node.data_dir)
        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while True:  # /healthz comes back to 200 on a new redis-server
            status = 0
            try:
                status, _ = http_json(node.url + "/healthz")
            except OSError:
                pass
            if status == 200 and _redis_pid(node.data_dir) != old_pid:
                break
            assert time.monotonic() - killed_at < RECOVERY_BOUND_S, node.log()[-3000:]
            await asyncio.sleep(0.1)
        healthy_s = time.monotonic() - killed_at
        # Chat works again on the same WebSocket, and this node's clients are resynced.
        await _chat_until_ok(viewer, "after", RECOVERY_BOUND_S)
        await viewer.until(lambda c: bool(c.of_type("resync")), RECOVERY_BOUND_S)
        await viewer.until(lambda c: "after" in [m["text"] for m in c.chats()], 5)
        late = await open_ws(session, ws_url)  # a new viewer joins the recovered node
        assert "after" in [m["text"] for m in late.chats()]
    assert node.proc.poll() is None
    assert healthy_s < RECOVERY_BOUND_S
    log = node.log()
    assert "restarting it on its AOF" in log
    # Bounded logging: the retry loops do not flood (~17,000 lines in 25 s before).
    assert len(log.splitlines()) < 200, log[-3000:]
    assert log.count("pub/sub read failed") <= 4


def test_node_exits_non_zero_when_redis_cannot_come_back(server_proc: Any) -> None:
    node = server_proc()
    aof = node.data_dir / "liveshop.aof"
    with open(aof, "r+b") as handle:  # redis-server refuses to load a corrupt AOF
        handle.write(b"not an AOF\r\n")
    os.kill(_redis_pid(node.data_dir), signal.SIGKILL)
    try:
        code = node.proc.wait(timeout=30)
    except Exception:
        node.stop(signal.SIGKILL)
        raise AssertionError(f"node did not exit:\n{node.log()[-3000:]}") from None
    assert code == 1, node.log()[-3000:]
    assert "could not be restarted" in node.log()

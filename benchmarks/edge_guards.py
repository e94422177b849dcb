"""Issue 14 part B: what the new edge checks cost, and how fast a node gets its Redis back.

    .venv/bin/python benchmarks/edge_guards.py --kills 3

1. ``MaskGuard`` (server/ws/guard.py): ns per inbound client frame on top of aiohttp's parser,
   for one chat frame per read and for 64 frames per read (a busy connection);
2. the one text rule (server/textrules.py): ns per WebSocket chat frame (plain, raw UTF-8, and
   with ``\\u`` escapes, the only kind that is walked) and per HTTP body (always walked);
3. ``kill -9`` of the embedded redis-server of a real ``python -m server`` node, ``--kills`` times:
   seconds until ``/healthz`` answers 200 again, and until a chat message is accepted again.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import struct
import sys
import tempfile
import time
import timeit
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.protocol import check_text  # noqa: E402
from server.textrules import bad_text_field  # noqa: E402
from server.ws.guard import MaskGuard  # noqa: E402


class _Sink:
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        return False, b""


def _masked(payload: bytes) -> bytes:
    key = os.urandom(4)
    head = (
        bytes((0x81, 0x80 | len(payload)))
        if len(payload) < 126
        else struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
    )
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _per_call_ns(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def guard_costs() -> dict[str, float]:
    frame = _masked(json.dumps({"type": "chat", "id": 7, "text": "hello everyone " * 3}).encode())
    burst = frame * 64
    guard = MaskGuard(_Sink(), None)  # type: ignore[arg-type]
    sink = _Sink()
    one = _per_call_ns(lambda: guard.feed_data(frame), 200_000) - _per_call_ns(
        lambda: sink.feed_data(frame), 200_000
    )
    many = (_per_call_ns(lambda: guard.feed_data(burst), 20_000)) / 64
    return {
        "mask_guard_ns_per_frame_1_per_read": round(one),
        "mask_guard_ns_per_frame_64_per_read": round(many),
    }


def text_costs() -> dict[str, float]:
    ascii_chat = {"type": "chat", "id": 7, "text": "hello everyone, love the shoes"}
    utf8_chat = {"type": "chat", "id": 7, "text": "大家好 😀 these are great — Ünïcode"}
    body = {f"field{i}": f"value {i} ü" for i in range(40)}
    raw_ascii, raw_utf8 = json.dumps(ascii_chat), json.dumps(utf8_chat, ensure_ascii=False)
    escaped = json.dumps(utf8_chat)  # \u escapes: the frame must be walked
    return {
        "ws_check_ns_plain_frame": round(
            _per_call_ns(lambda: check_text(ascii_chat, raw_ascii), 200_000)
        ),
        "ws_check_ns_utf8_frame": round(
            _per_call_ns(lambda: check_text(utf8_chat, raw_utf8), 200_000)
        ),
        "ws_check_ns_escaped_frame": round(
            _per_call_ns(lambda: check_text(utf8_chat, escaped), 200_000)
        ),
        "text_rule_ns_ascii_chat": round(_per_call_ns(lambda: bad_text_field(ascii_chat), 200_000)),
        "text_rule_ns_utf8_chat": round(_per_call_ns(lambda: bad_text_field(utf8_chat), 200_000)),
        "text_rule_ns_40_field_body": round(_per_call_ns(lambda: bad_text_field(body), 20_000)),
    }


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except OSError as exc:
        return getattr(exc, "code", 0) or 0


def _wait_healthy(url: str, data_dir: Path, old_pid: int) -> None:
    """Until /healthz is 200 on a new redis-server (blocking: nothing else runs meanwhile)."""
    while not (
        _get(url + "/healthz") == 200 and int((data_dir / "redis.pid").read_text()) != old_pid
    ):
        time.sleep(0.02)


async def recovery(kills: int) -> dict[str, Any]:
    import aiohttp

    sys.path.insert(0, str(ROOT / "tests"))
    from tests.conftest import free_port, http_json, start_server

    work = Path(tempfile.mkdtemp(prefix="liveshop-recovery-"))
    node = start_server(work / "data", "--demo", "--chat-rate", "50", "--chat-burst", "50",
                        port=free_port())  # fmt: skip
    healthy, chatting = [], []
    try:
        deadline = time.monotonic() + 15
        while (status := http_json(node.url + "/api/shows/demo/guest", "POST", {})[0]) != 201:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
        token = http_json(node.url + "/api/shows/demo/guest", "POST", {})[1]["token"]
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(
                node.url.replace("http", "ws", 1) + f"/ws/demo?token={token}"
            )
            while json.loads((await ws.receive(timeout=10)).data)["type"] != "batch":
                pass  # the welcome, then the first batch: joined
            rid = 0
            for _ in range(kills):
                pid = int((node.data_dir / "redis.pid").read_text())
                os.kill(pid, signal.SIGKILL)
                killed = time.monotonic()
                _wait_healthy(node.url, node.data_dir, pid)
                healthy.append(time.monotonic() - killed)
                while True:
                    rid += 1
                    await ws.send_json({"type": "chat", "id": rid, "text": f"k{rid}"})
                    while True:
                        frame = await ws.receive(timeout=10)
                        if frame.type != aiohttp.WSMsgType.TEXT:
                            raise RuntimeError(
                                f"socket closed ({frame.data}) after kill {len(healthy)}"
                            )
                        msg = json.loads(frame.data)
                        if msg.get("id") == rid:
                            break
                    if msg["type"] == "reply":
                        break
                    await asyncio.sleep(0.02)
                chatting.append(time.monotonic() - killed)
                await asyncio.sleep(1.0)
            await ws.close()
        lines = len(node.log().splitlines())
    finally:
        node.stop()
    return {
        "kills": kills,
        "healthz_back_s": [round(s, 2) for s in healthy],
        "chat_back_s": [round(s, 2) for s in chatting],
        "log_lines_total": lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--kills", type=int, default=3, help="at most 5 (the supervisor's budget per minute)"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {**guard_costs(), **text_costs()}
    if args.kills:
        result.update(asyncio.run(recovery(min(args.kills, 5))))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

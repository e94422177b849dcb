"""Pieces the scenarios share: a viewer joining the show, the join ramp, chat text tagging."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from ..client import ApiError, ShowSocket, mint_token
from ..lean_ws import LeanShowSocket
from .base import WorkerEnv

AnySocket = ShowSocket | LeanShowSocket

DRAIN_S = 1.5  # a scenario's drain ends once no delivery arrived for this long


def open_socket(
    env: WorkerEnv,
    show_id: str,
    token: str,
    on_events: Callable[[list[dict[str, Any]]], None] | None = None,
) -> AnySocket:
    """The lean client (default, ``ws://``) or aiohttp's (``--ws-client aiohttp`` or ``https``)."""
    if env.args.get("ws_client", "lean") == "lean" and env.url.startswith("http://"):
        return LeanShowSocket(env.url, show_id, token, on_events)
    return ShowSocket(env.session, env.url, show_id, token, on_events)


def ramp_at(env: WorkerEnv, index: int, ramp: float, start: float | None = None) -> float:
    """Monotonic time at which client ``index`` joins: the crowd arrives at ``ramp`` joins/s."""
    return (start if start is not None else env.t0) + index / max(ramp, 0.001)


async def join(
    env: WorkerEnv,
    show_id: str,
    host_token: str,
    role: str,
    name: str,
    on_events: Callable[[list[dict[str, Any]]], None] | None = None,
) -> AnySocket | None:
    """Mint a token for one simulated person and connect their WebSocket, retrying like a real
    client (``--connect-retries``, backoff with jitter). Every failed attempt counts in
    ``connect_errors``; a client that gives up counts in ``clients_failed``. None on giving up."""
    stats = env.stats
    stats.add("clients")
    started = time.monotonic()
    retries = int(env.args.get("connect_retries", 2))
    token: str | None = None
    for attempt in range(retries + 1):
        try:
            if token is None:
                token, _user_id = await mint_token(
                    env.session, env.url, show_id, host_token, role, name
                )
            sock = open_socket(env, show_id, token, on_events)
            await sock.connect()
        except (TimeoutError, ApiError, RuntimeError, aiohttp.ClientError, OSError) as exc:
            count_error(env, "connect", exc, connect=True)
            if attempt == retries or env.stopping:
                stats.add("clients_failed")
                return None
            await asyncio.sleep(env.rng.uniform(0.5, 1.5) * 2**attempt)
            continue
        stats.hist("connect").record_value(max(1, int((time.monotonic() - started) * 1e6)))
        stats.gauges["connected"] = stats.gauges.get("connected", 0) + 1
        return sock
    return None


def left(env: WorkerEnv) -> None:
    """A connection ended: lower the connected gauge."""
    env.stats.gauges["connected"] = env.stats.gauges.get("connected", 0) - 1


def chat_text(tag: str, sender: int, seq: int) -> str:
    """Danmaku text carrying the send time on the machine-wide monotonic clock (digits only:
    nothing the banned-word filter could match)."""
    return f"{tag} {sender} {seq} {time.monotonic_ns()}"


def stream_id(value: str) -> tuple[int, int]:
    """A Redis stream id ``ms-seq`` as a comparable tuple."""
    ms, _, seq = value.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)


def count_error(
    env: WorkerEnv, what: str, exc: BaseException, connect: bool = False, final: bool = False
) -> None:
    """Count a failed call under ``error:<what>_<code>``; 5xx/``internal`` also count as server errors.
    ``final``: the client gives up (``clients_failed``)."""
    code = exc.code if isinstance(exc, ApiError) else type(exc).__name__
    env.stats.add("connect_errors" if connect else "errors")
    if final:
        env.stats.add("clients_failed")
    env.stats.add(f"error:{what}_{code}")
    if code == "internal" or (isinstance(exc, ApiError) and exc.status >= 500):
        env.stats.add("server_errors")


class ChatReceiver:
    """Per-connection event handler: latency of this run's tagged chat, order check, drops, likes."""

    __slots__ = ("stats", "tag", "received", "last_id", "likes_total", "not_before_ns")

    def __init__(self, stats: Any, tag: str) -> None:
        self.stats = stats
        self.tag = tag
        self.received = 0
        self.last_id = (0, 0)
        self.likes_total = 0
        self.not_before_ns = 0

    def __call__(self, events: list[dict[str, Any]]) -> None:
        now_ns = time.monotonic_ns()
        stats = self.stats
        tag = self.tag
        pending = stats._pending
        received = 0
        for event in events:
            kind = event.get("type")
            if kind == "chat":
                sid = stream_id(event.get("id", "0-0"))
                if sid <= self.last_id:
                    stats.add("out_of_order")
                self.last_id = sid
                parts = event.get("text", "").split(" ")
                if len(parts) != 4 or parts[0] != tag:
                    continue
                sent_ns = int(parts[3])
                if sent_ns < self.not_before_ns:
                    continue
                received += 1
                # Inlined WorkerStats.latency_us: this is the hottest line of the tester.
                value = (now_ns - sent_ns) // 1000 or 1
                shift = value.bit_length() - 11
                if shift > 0:
                    value = (value >> shift) << shift
                pending[value] = pending.get(value, 0) + 1
            elif kind == "skipped":
                stats.add("skipped", int(event.get("count", 0)))
            elif kind == "likes":
                self.likes_total = max(self.likes_total, int(event.get("total", 0)))
        if received:
            self.received += received
            stats.counters["received"] += received


async def mint_with_retry(
    env: WorkerEnv, show_id: str, host_token: str, role: str, name: str
) -> tuple[str, str]:
    """Host-minted token for one simulated person, retried (``--connect-retries``) with backoff;
    every failed attempt counts in ``connect_errors``, giving up raises the last error."""
    retries = int(env.args.get("connect_retries", 2))
    for attempt in range(retries + 1):
        try:
            return await mint_token(env.session, env.url, show_id, host_token, role, name)
        except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as exc:
            if attempt == retries or env.stopping:
                raise
            count_error(env, "token", exc, connect=True)
            await asyncio.sleep(env.rng.uniform(0.5, 1.5) * 2**attempt)
    raise RuntimeError("unreachable")

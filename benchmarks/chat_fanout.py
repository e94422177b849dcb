"""Chat fan-out benchmark: N viewers on M server processes (``--reuse-port``), R chat messages/s.

Most viewers are raw sockets that only count bytes (a viewer must cost the *client* almost
nothing); a few probes decode every frame and measure delivery latency from the send time
embedded in each message. Prints one JSON line with the numbers recorded in docs/performance.md.

    .venv/bin/python benchmarks/chat_fanout.py --viewers 10000 --rate 100 --servers 2 --clients 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret"


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Viewer(asyncio.Protocol):
    """A WebSocket viewer that counts bytes (and, as a probe, decodes frames to time chat)."""

    def __init__(self, request: bytes, probe: bool, stats: dict, codec: str) -> None:
        self.request = request
        self.probe = probe
        self.stats = stats
        self.codec = codec
        self.upgraded = False
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]
        self.stats.setdefault("open", []).append(transport)

    def data_received(self, data: bytes) -> None:
        self.stats["bytes"] += len(data)
        if not self.upgraded:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded = True
            self.stats["connected"] += 1
            data = bytes(self.buf[end + 4 :])
            self.buf.clear()
        if self.probe:
            self.buf += data
            self._parse()

    def _parse(self) -> None:
        import msgpack

        buf = self.buf
        while len(buf) >= 2:
            size = buf[1] & 0x7F
            head = 2
            if size == 126:
                if len(buf) < 4:
                    return
                size = struct.unpack_from("!H", buf, 2)[0]
                head = 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size = struct.unpack_from("!Q", buf, 2)[0]
                head = 10
            if len(buf) < head + size:
                return
            payload = bytes(buf[head : head + size])
            del buf[: head + size]
            try:
                message = (
                    msgpack.unpackb(payload)
                    if self.codec.endswith("msgpack")
                    else json.loads(payload)
                )
            except ValueError:  # a control frame (ping/close) or a non-protocol payload
                continue
            if message.get("type") != "batch":
                continue
            now = time.time() * 1000
            for event in message["events"]:
                if event.get("type") == "chat" and event.get("text", "").startswith("t="):
                    self.stats["latencies"].append(now - float(event["text"][2:].split()[0]))
                    self.stats["chats"] += 1
                elif event.get("type") == "skipped":
                    self.stats["skipped"] += event["count"]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats["lost"] += 1


def _request(host: str, port: int, path: str, codec: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {codec}\r\n\r\n"
    ).encode()


def client_worker(
    index: int,
    count: int,
    probes: int,
    port: int,
    show_id: str,
    codec: str,
    conn: mp.connection.Connection,
) -> None:
    """Child process: open ``count`` viewers, then report stats when asked."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from server import auth

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stats = {"bytes": 0, "connected": 0, "lost": 0}
        probe_stats = {
            "bytes": 0,
            "connected": 0,
            "lost": 0,
            "latencies": [],
            "chats": 0,
            "skipped": 0,
        }

        async def open_one(i: int) -> None:
            token = auth.issue(
                SECRET,
                show_id=show_id,
                role="viewer",
                name=f"v{index}-{i}",
                user_id=f"b{index}_{i}",
            )
            probe = i < probes
            request = _request("127.0.0.1", port, f"/ws/{show_id}?token={token}", codec)
            for attempt in range(5):
                try:
                    await loop.create_connection(
                        lambda: Viewer(request, probe, probe_stats if probe else stats, codec),
                        "127.0.0.1",
                        port,
                    )
                    return
                except OSError:
                    await asyncio.sleep(0.2 * (attempt + 1))

        async def keepalive() -> None:
            # Unsolicited masked pongs (RFC 6455 §5.5.3) count as traffic for the server's heartbeat,
            # so byte-counting viewers need not parse frames to answer pings.
            while True:
                await asyncio.sleep(20)
                for transport in stats.get("open", []) + probe_stats.get("open", []):
                    if not transport.is_closing():
                        transport.write(b"\x8a\x80" + os.urandom(4))

        pinger = asyncio.create_task(keepalive())  # noqa: F841 - runs until the process ends
        for start in range(0, count, 100):
            await asyncio.gather(*(open_one(i) for i in range(start, min(count, start + 100))))
        for _ in range(300):  # wait for every upgrade
            if stats["connected"] + probe_stats["connected"] >= count:
                break
            await asyncio.sleep(0.1)

        conn.send(("ready", stats["connected"] + probe_stats["connected"]))
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "reset":
                stats["bytes"] = probe_stats["bytes"] = probe_stats["chats"] = probe_stats[
                    "skipped"
                ] = 0
                probe_stats["latencies"] = []
                conn.send("ok")
            elif command == "report":
                conn.send({"bytes": stats["bytes"], "lost": stats["lost"] + probe_stats["lost"],
                           "connected": stats["connected"] + probe_stats["connected"],
                           "probe_chats": probe_stats["chats"], "probe_skipped": probe_stats["skipped"],
                           "latencies": probe_stats["latencies"]})  # fmt: skip
                return

    asyncio.run(main())


def scrape_histogram(port: int, name: str) -> dict[str, float]:
    """p50/p99 upper bucket bounds of a server histogram (from whichever process answers)."""
    try:
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        )
    except OSError:
        return {}
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append(
                (float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1]))
            )
    total = buckets[-1][1] if buckets else 0
    out = {}
    for q in (0.5, 0.99):
        out[f"p{int(q * 100)}_le_ms"] = next(
            (round(le * 1000, 1) for le, c in buckets if total and c >= q * total), -1.0
        )
    return out


def http_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def send_chat(port: int, show_id: str, rate: float, duration: float, senders: int) -> int:
    import aiohttp

    from server import auth

    sent = 0
    async with aiohttp.ClientSession() as session:
        sockets = []
        for i in range(senders):
            token = auth.issue(
                SECRET, show_id=show_id, role="viewer", name=f"sender{i}", user_id=f"sender_{i}"
            )
            sockets.append(
                await session.ws_connect(
                    f"http://127.0.0.1:{port}/ws/{show_id}?token={token}",
                    protocols=("liveshop.json",),
                )
            )

        async def drain(ws) -> None:
            async for _ in ws:
                pass

        drains = [asyncio.create_task(drain(ws)) for ws in sockets]
        interval = senders / rate
        start = time.monotonic()

        async def run(ws, offset: float) -> None:
            nonlocal sent
            next_at = start + offset
            while next_at < start + duration:
                await asyncio.sleep(max(0, next_at - time.monotonic()))
                await ws.send_str(
                    json.dumps({"type": "chat", "text": f"t={time.time() * 1000:.1f} hello world"})
                )
                sent += 1
                next_at += interval

        await asyncio.gather(*(run(ws, i * interval / senders) for i, ws in enumerate(sockets)))
        await asyncio.sleep(1.0)
        for task in drains:
            task.cancel()
        for ws in sockets:
            await ws.close()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=10000)
    parser.add_argument(
        "--rate", type=float, default=100, help="chat messages per second (all senders)"
    )
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument(
        "--servers", type=int, default=2, help="server processes sharing the port (--reuse-port)"
    )
    parser.add_argument("--clients", type=int, default=2, help="viewer client processes")
    parser.add_argument(
        "--probes",
        type=int,
        default=20,
        help="viewers (per client) that decode and time every frame",
    )
    parser.add_argument("--codec", default="liveshop.msgpack")
    parser.add_argument("--batch-ms", type=int, default=50)
    parser.add_argument("--profile", help="run the first server under cProfile, writing this file")
    args = parser.parse_args()

    from server.embedded_redis import EmbeddedRedis

    tmp = Path(tempfile.mkdtemp(prefix="fanout-"))
    redis = EmbeddedRedis(tmp / "redis")
    redis_url = redis.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers = []
    for i in range(args.servers):
        prefix = ["-m", "cProfile", "-o", args.profile] if args.profile and i == 0 else []
        argv = [sys.executable, *prefix, "-m", "server", "--port", str(port), "--redis-url", redis_url, "--secret", SECRET,
                "--data-dir", str(tmp / f"d{i}"), "--reuse-port", "--chat-rate", "1000", "--chat-burst", "1000",
                "--log-level", "WARNING", "--batch-ms", str(args.batch_ms)]  # fmt: skip
        servers.append(
            subprocess.Popen(
                argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp / f"s{i}.log", "wb")
            )
        )
    clients: list[tuple[mp.Process, mp.connection.Connection]] = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        show_id = http_json(f"http://127.0.0.1:{port}/api/shows", {"title": "bench"})["show"]["id"]
        ctx = mp.get_context("spawn")
        per_client = args.viewers // args.clients
        started = time.monotonic()
        for i in range(args.clients):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=client_worker,
                args=(i, per_client, args.probes, port, show_id, args.codec, child),
            )
            proc.start()
            clients.append((proc, parent))
        connected = sum(parent.recv()[1] for _, parent in clients)
        join_s = time.monotonic() - started
        time.sleep(3)  # presence settles
        for _, parent in clients:
            parent.send("reset")
            parent.recv()
        ticks0 = [_ticks(p.pid) for p in servers]
        client_ticks0 = [_ticks(p.pid) for p, _ in clients]
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        sent = asyncio.run(send_chat(port, show_id, args.rate, args.duration, args.senders))
        elapsed = time.monotonic() - t0
        ticks1 = [_ticks(p.pid) for p in servers]
        client_ticks1 = [_ticks(p.pid) for p, _ in clients]
        reports = []
        for _, parent in clients:
            parent.send("report")
            reports.append(parent.recv())
        latencies = sorted(x for r in reports for x in r["latencies"])
        probes = args.probes * args.clients
        chats_per_probe = sum(r["probe_chats"] for r in reports) / max(probes, 1)
        skipped_per_probe = sum(r["probe_skipped"] for r in reports) / max(probes, 1)

        def pct(p: float) -> float:
            return (
                round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)
                if latencies
                else -1.0
            )

        hz = os.sysconf("SC_CLK_TCK")
        result = {
            "viewers": connected, "servers": args.servers, "codec": args.codec, "rate": args.rate,
            "sent": sent, "seconds": round(elapsed, 1), "join_s": round(join_s, 1),
            "delivered_per_viewer": round(chats_per_probe, 1), "skipped_per_viewer": round(skipped_per_probe, 1),
            "deliveries_per_s": round(chats_per_probe * connected / elapsed),
            "bytes_per_s": round(sum(r["bytes"] for r in reports) / elapsed),
            "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
            "server_cpu": [round((b - a) / hz / elapsed, 2) for a, b in zip(ticks0, ticks1, strict=True)],
            "client_cpu": [round((b - a) / hz / elapsed, 2) for a, b in zip(client_ticks0, client_ticks1, strict=True)],
            "loadavg": [round(load0, 1), round(os.getloadavg()[0], 1)],
            "lost_connections": sum(r["lost"] for r in reports),
            "server_fanout": scrape_histogram(port, "liveshop_ws_fanout_seconds"),
            "server_write": scrape_histogram(port, "liveshop_ws_write_seconds"),
        }  # fmt: skip
        print(json.dumps(result))
    finally:
        for proc, _ in clients:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        redis.stop()


if __name__ == "__main__":
    main()

"""Chat fan-out benchmark: N viewers on M server processes (``--reuse-port``), R chat messages/s.

Most viewers are raw sockets read in sweeps (every ``--sweep-ms``) that only parse frame headers
and chain a CRC over the frames carrying chat: a viewer must cost the *client* almost nothing,
since load generator, servers and Redis share the machine. A few probes per client read on every
wakeup, decode every frame, time each message from the send time in its text and check that
each sender's sequence numbers arrive complete and in order. Every viewer is then verified: its
CRC must equal a verified probe's (viewers of one node receive byte-identical batch frames).
Prints one JSON line with the numbers recorded in docs/performance.md.

    .venv/bin/python benchmarks/chat_fanout.py --viewers 10000 --rate 100 --servers 2 --clients 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import multiprocessing as mp
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret"


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _run_delay_ns(pid: int) -> int:
    """Nanoseconds the process's threads spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return -1.0


CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _machine_ticks() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


MARK = b"hello world"  # in every benchmark chat text, and nowhere else


class Viewer:
    """What every viewer records, cheaply: frames, and a CRC chained over the payload of every
    frame that carries chat. Viewers of one node receive byte-identical batch frames, so a viewer
    whose CRC equals that of a probe (which decoded every message and found each sender's
    complete and in order) received exactly the same messages, in the same order."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.upgraded = False
        self.tail = b""
        self.frames = self.crc = self.bytes = 0
        self.lost = False

    def reset(self) -> None:
        self.frames = self.crc = self.bytes = 0

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.tail:
            data, self.tail = self.tail + data, b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.tail = data
                return
            if b" 101 " not in data[:end]:
                raise ConnectionError(data[:end].decode(errors="replace"))
            self.upgraded = True
            data = data[end + 4 :]
        pos, end = 0, len(data)
        while end - pos >= 2:  # server frames: unmasked, RFC 6455 §5.2
            size = data[pos + 1] & 0x7F
            head = 2
            if size == 126:
                size = int.from_bytes(data[pos + 2 : pos + 4], "big")
                head = 4
            elif size == 127:
                size = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            stop = pos + head + size
            if stop > end or end - pos < head:
                break
            self.frames += 1
            if data[pos] & 0x0F in (1, 2) and data.find(MARK, pos + head, stop) >= 0:
                payload = memoryview(data)[pos + head : stop]
                self.crc = zlib.crc32(payload, self.crc)
                self.on_chat(payload)
            pos = stop
        if pos < end:
            self.tail = data[pos:]

    def on_chat(self, payload: memoryview) -> None:
        pass


class Probe(Viewer, asyncio.Protocol):
    """A viewer that reads on every wakeup and decodes every frame: latency from the send time in
    each text, and every sender's sequence numbers checked to arrive complete and in order."""

    def __init__(self, request: bytes, codec: str) -> None:
        super().__init__(request)
        self.codec = codec
        self.latencies: list[float] = []
        self.next_seq: dict[str, int] = {}
        self.chats = self.disorder = self.skipped = 0

    def reset(self) -> None:
        super().reset()
        self.latencies = []
        self.next_seq = {}
        self.chats = self.disorder = self.skipped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.feed(data)

    def on_chat(self, payload: memoryview) -> None:
        message = (
            msgpack.unpackb(payload)
            if self.codec.endswith("msgpack")
            else json.loads(bytes(payload))
        )
        now = time.time() * 1000
        for event in message.get("events", ()):
            if event.get("type") == "skipped":
                self.skipped += event["count"]
            elif event.get("type") == "chat" and event.get("text", "").startswith("t="):
                sent_ms, sender, seq = event["text"][2:].split()[:3]
                self.latencies.append(now - float(sent_ms))
                self.chats += 1
                if int(seq) != self.next_seq.get(sender, 0):
                    self.disorder += 1
                self.next_seq[sender] = int(seq) + 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


READ_BUFFER = bytearray(1 << 18)  # one per client process: sweeps read one socket at a time
READ_VIEW = memoryview(READ_BUFFER)


class Bulk(Viewer):
    """A viewer on a raw socket that the client reads in sweeps (every ``--sweep-ms``) instead of
    on every wakeup: like a viewer on another machine, its reading costs the server's two cores
    almost nothing. It never falls behind (a sweep drains the socket), so the server's write path
    is the same as for an eager reader."""

    def __init__(self, request: bytes, sock: socket.socket) -> None:
        super().__init__(request)
        self.sock = sock

    def read(self) -> bool:
        """False when the connection is gone."""
        try:
            size = self.sock.recv_into(READ_BUFFER)
        except BlockingIOError:
            return True
        except OSError:
            size = 0
        if not size:
            self.lost = True
            return False
        self.feed(bytes(READ_VIEW[:size]))
        return True


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
    sweep_s: float,
    conn: mp.connection.Connection,
) -> None:
    """Child process: open ``count`` viewers (the first ``probes`` of them probes), then report
    each viewer's result when asked."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from server import auth

    async def main() -> None:
        loop = asyncio.get_running_loop()
        poller = select.epoll()
        bulk: dict[int, Bulk] = {}
        probe_list: list[Probe] = []
        gone: list[Viewer] = []

        async def sweep() -> None:
            while True:
                started = time.monotonic()
                for fd, _ in poller.poll(0, len(bulk) or 1):
                    viewer = bulk[fd]
                    if not viewer.read():
                        poller.unregister(fd)
                        gone.append(bulk.pop(fd))
                await asyncio.sleep(max(0.0, sweep_s - (time.monotonic() - started)))

        async def open_one(i: int) -> None:
            token = auth.issue(
                SECRET,
                show_id=show_id,
                role="viewer",
                name=f"v{index}-{i}",
                user_id=f"b{index}_{i}",
            )
            request = _request("127.0.0.1", port, f"/ws/{show_id}?token={token}", codec)
            for attempt in range(5):
                try:
                    if i < probes:
                        _, probe = await loop.create_connection(
                            lambda: Probe(request, codec), "127.0.0.1", port
                        )
                        probe_list.append(probe)
                    else:
                        sock = socket.socket()
                        sock.setblocking(False)
                        await loop.sock_connect(sock, ("127.0.0.1", port))
                        sock.send(request)
                        bulk[sock.fileno()] = Bulk(request, sock)
                        poller.register(sock.fileno(), select.EPOLLIN)
                    return
                except OSError:
                    await asyncio.sleep(0.2 * (attempt + 1))

        def everyone() -> list[Viewer]:
            return [*probe_list, *bulk.values(), *gone]

        async def keepalive() -> None:
            # Unsolicited masked pongs (RFC 6455 §5.5.3) count as traffic for the server's heartbeat,
            # so viewers need not answer pings.
            while True:
                await asyncio.sleep(20)
                for probe in probe_list:
                    if not probe.transport.is_closing():
                        probe.transport.write(b"\x8a\x80" + os.urandom(4))
                for viewer in bulk.values():
                    try:
                        viewer.sock.send(b"\x8a\x80" + os.urandom(4))
                    except OSError:
                        pass

        tasks = [asyncio.create_task(sweep()), asyncio.create_task(keepalive())]  # noqa: F841
        for start in range(0, count, 100):
            await asyncio.gather(*(open_one(i) for i in range(start, min(count, start + 100))))
        for _ in range(300):  # wait for every upgrade
            if sum(v.upgraded for v in everyone()) >= count:
                break
            await asyncio.sleep(0.1)

        conn.send(("ready", sum(v.upgraded for v in everyone())))
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "reset":
                for viewer in everyone():
                    viewer.reset()
                conn.send("ok")
            elif command == "report":
                await asyncio.sleep(2 * sweep_s)  # the last sweep
                viewers = everyone()
                conn.send({
                    "connected": sum(v.upgraded for v in viewers),
                    "lost": sum(v.lost for v in viewers),
                    "bytes": sum(v.bytes for v in viewers),
                    "frames": sum(v.frames for v in viewers),
                    # crc → how many bulk viewers ended with it
                    "bulk": collections.Counter(v.crc for v in viewers if isinstance(v, Bulk)),
                    "probes": [{"crc": p.crc, "chats": p.chats, "disorder": p.disorder,
                                "skipped": p.skipped, "senders": p.next_seq} for p in probe_list],
                    "latencies": [x for p in probe_list for x in p.latencies],
                })  # fmt: skip
                return

    asyncio.run(main())


def scrape_histogram(port: int, name: str) -> dict[str, float]:
    """p50/p99 upper bucket bounds and the mean of a server histogram (from whichever process
    answers; since that server started)."""
    try:
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        )
    except OSError:
        return {}
    buckets = []
    total_s = 0.0
    for line in text.splitlines():
        if line.startswith(name + "_sum"):
            total_s = float(line.rsplit(" ", 1)[1])
        if line.startswith(name + "_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append(
                (float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1]))
            )
    total = buckets[-1][1] if buckets else 0
    out = {"mean_ms": round(1000 * total_s / total, 1) if total else -1.0}
    for q in (0.5, 0.99):
        out[f"p{int(q * 100)}_le_ms"] = next(
            (round(le * 1000, 1) for le, c in buckets if total and c >= q * total), -1.0
        )
    return out


BENCH_API_KEY = "bench:benchmark-operator-key"  # the operator key the benchmark server runs with


def http_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_API_KEY}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def send_chat(
    port: int, show_id: str, rate: float, duration: float, senders: int
) -> tuple[int, int]:
    """Send chat at ``rate`` msg/s from ``senders`` connections; (sent, refused). Each text carries
    its send time, the sender and the sender's sequence number (one connection's messages are
    handled in order, so each sender's numbers must arrive in order)."""
    import aiohttp

    from server import auth

    sent = refused = 0
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
            nonlocal refused
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT and '"type":"error"' in message.data:
                    refused += 1

        drains = [asyncio.create_task(drain(ws)) for ws in sockets]
        interval = senders / rate
        start = time.monotonic()

        async def run(ws, sender: int) -> None:
            nonlocal sent
            next_at = start + sender * interval / senders
            seq = 0
            while next_at < start + duration:
                await asyncio.sleep(max(0, next_at - time.monotonic()))
                text = f"t={time.time() * 1000:.1f} s{sender} {seq} hello world"
                await ws.send_str(json.dumps({"type": "chat", "text": text}))
                sent += 1
                seq += 1
                next_at += interval

        await asyncio.gather(*(run(ws, i) for i, ws in enumerate(sockets)))
        await asyncio.sleep(1.0)
        for task in drains:
            task.cancel()
        for ws in sockets:
            await ws.close()
    return sent, refused


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
    parser.add_argument(
        "--sweep-ms", type=float, default=50, help="how often non-probe viewers read their sockets"
    )
    parser.add_argument("--batch-ms", type=int, default=50)
    parser.add_argument("--batch-max-ms", type=int, default=100)
    parser.add_argument("--profile", help="run the first server under cProfile, writing this file")
    parser.add_argument(
        "--probe-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="all probes in one extra client process (--no-probe-process: in the bulk clients)",
    )
    args = parser.parse_args()

    from server.redis.embedded import EmbeddedRedis

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
                "--log-level", "WARNING", "--batch-ms", str(args.batch_ms),
                "--batch-max-ms", str(args.batch_max_ms), "--api-key", BENCH_API_KEY,
                "--ws-connects-per-ip", "0", "--ws-max-per-ip", "0", "--http-anon-per-ip", "0"]  # fmt: skip
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
        # (viewers, probes among them) per client process. By default the probes get a process
        # of their own: in a bulk client a sweep over thousands of sockets runs as one block,
        # and a probe's read (and its timestamp) would wait for it.
        if args.probe_process:
            probe_count = args.probes * args.clients
            per_client = (args.viewers - probe_count) // args.clients
            specs = [(probe_count, probe_count)] + [(per_client, 0)] * args.clients
        else:
            specs = [(args.viewers // args.clients, args.probes)] * args.clients
        started = time.monotonic()
        for i, (count, probes) in enumerate(specs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=client_worker,
                args=(i, count, probes, port, show_id, args.codec, args.sweep_ms / 1000, child),
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
        own0 = _ticks(redis.process.pid) + _ticks(os.getpid())
        waits0 = [_run_delay_ns(p.pid) for p in servers]
        machine0 = _machine_ticks()
        client_ticks0 = [_ticks(p.pid) for p, _ in clients]
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        sent, refused = asyncio.run(
            send_chat(port, show_id, args.rate, args.duration, args.senders)
        )
        elapsed = time.monotonic() - t0
        ticks1 = [_ticks(p.pid) for p in servers]
        own1 = _ticks(redis.process.pid) + _ticks(os.getpid())
        waits1 = [_run_delay_ns(p.pid) for p in servers]
        machine1 = _machine_ticks()
        client_ticks1 = [_ticks(p.pid) for p, _ in clients]
        reports = []
        for _, parent in clients:
            parent.send("report")
            reports.append(parent.recv())
        latencies = sorted(x for r in reports for x in r["latencies"])
        expected = sent - refused
        probes = [p for r in reports for p in r["probes"]]
        # A CRC is verified when a probe with it decoded every message, each sender's in order.
        verified = {
            p["crc"]: p["chats"]
            for p in probes
            if p["chats"] == expected and not p["disorder"] and not p["skipped"]
        }
        bulk: collections.Counter = collections.Counter()
        for r in reports:
            bulk.update(r["bulk"])
        complete = sum(n for crc, n in bulk.items() if crc in verified)
        complete += sum(p["crc"] in verified for p in probes)
        received = expected * complete + sum(p["chats"] for p in probes if p["crc"] not in verified)

        def pct(p: float) -> float:
            return (
                round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)
                if latencies
                else -1.0
            )

        hz = os.sysconf("SC_CLK_TCK")
        machine = {
            k: round((b - a) / hz / elapsed, 2)
            for k, a, b in zip(CPU_FIELDS, machine0, machine1, strict=True)
        }
        result = {
            "viewers": connected, "servers": args.servers, "clients": args.clients, "codec": args.codec,
            "rate": args.rate, "batch_max_ms": args.batch_max_ms, "sent": sent, "refused": refused,
            "seconds": round(elapsed, 1), "join_s": round(join_s, 1),
            # every viewer: received all `expected` messages, byte-identical to a verified probe's
            "viewers_complete": complete, "viewers_incomplete": connected - complete,
            "missing_deliveries": expected * connected - received,
            "probes_out_of_order": sum(p["disorder"] > 0 for p in probes),
            "skipped_per_probe": round(sum(p["skipped"] for p in probes) / max(len(probes), 1), 1),
            "deliveries_per_s": round(received / elapsed),
            "frames_per_s": round(sum(r["frames"] for r in reports) / elapsed),
            "bytes_per_s": round(sum(r["bytes"] for r in reports) / elapsed),
            "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
            "server_cpu": [round((b - a) / hz / elapsed, 2) for a, b in zip(ticks0, ticks1, strict=True)],
            "server_runqueue_wait": [round((b - a) / 1e9 / elapsed, 2) for a, b in zip(waits0, waits1, strict=True)],
            "server_rss_mb": [_rss_mb(p.pid) for p in servers],
            "client_cpu": [round((b - a) / hz / elapsed, 2) for a, b in zip(client_ticks0, client_ticks1, strict=True)],
            "redis_and_sender_cpu": round((own1 - own0) / hz / elapsed, 2),
            "machine_cores": {k: machine[k] for k in ("user", "system", "softirq", "idle", "steal")},
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

"""Flash-sale stampede benchmark: N buyers, one attempt each, on Q units.

    .venv/bin/python benchmarks/flash_sale.py --buyers 100000 --units 1000 --servers 2 --clients 2

Starts a private Redis (the embedded one) and ``--servers`` ``python -m server`` processes sharing
one port (SO_REUSEPORT), creates a show, a product and a live sale, then ``--clients`` worker
processes each mint their buyers' tokens (outside the timed part) and fire one buy attempt per
buyer over ``--connections`` raw HTTP/1.1 keep-alive connections. Reports attempts/s (first
request sent → last answer received), p50/p99 decision latency as seen by the client, and the
outcome counts, then checks the server's own records: sold + reserved must equal the units and
``GET /api/shows/{id}/orders`` must list exactly that many orders. ``--rounds`` repeats the
stampede on fresh sales and reports the medians.

``--transport ws``: every buyer is a connected viewer instead. Each client process connects its
buyers (distinct users, each from the client's own 127.0.x.y, joined and welcomed outside the
timed part), then each buyer sends one ``buy`` frame, at most ``--connections`` outstanding per
client process; attempts/s runs from the first frame sent to the last decision received. The
report adds the broadcast events every buyer received meanwhile (the fan-out the sale causes).
Each buyer holds a descriptor in a client and a server process: the per-process limit decides
how many ``--clients``/``--servers`` a given ``--buyers`` needs (checked before starting).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402

from loadtest.lean_ws import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, encode_frame  # noqa: E402
from server import auth  # noqa: E402
from server.redis.embedded import EmbeddedRedis  # noqa: E402

BENCH_API_KEY = "bench:benchmark-operator-key"  # the operator key the benchmark server runs with


def http(
    url: str, method: str = "GET", body: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode() if body is not None else None, method=method
    )
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_servers(
    count: int, redis_url: str, secret: str, tmp: Path
) -> tuple[str, list[subprocess.Popen[bytes]]]:
    port = free_port()
    procs = []
    for i in range(count):
        argv = [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(port), "--redis-url", redis_url,
                "--secret", secret, "--data-dir", str(tmp / f"data{i}"), "--log-level", "WARNING",
                "--api-key", BENCH_API_KEY, "--ws-connects-per-ip", "0", "--ws-max-per-ip", "0",
                "--http-anon-per-ip", "0"]  # fmt: skip
        if count > 1:
            argv.append("--reuse-port")
        log = open(tmp / f"server{i}.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
        procs.append(subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http(url + "/healthz")["status"] == "ok":
                time.sleep(0.5 * count)  # let every process bind
                return url, procs
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start; see " + str(tmp))


async def fire(
    port: int, sale_id: str, tokens: list[str], connections: int, start_at: float, pipeline: int = 1
) -> tuple[list[float], Counter[str], float, float]:
    """Send one buy per token over ``connections`` keep-alive connections; latencies in ms."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    path = f"/api/sales/{sale_id}/buy"
    queue = list(reversed(tokens))
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    await asyncio.sleep(max(0.0, start_at - time.time()))
    first = time.perf_counter()

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Up to ``pipeline`` requests go out in one write (HTTP/1.1 pipelining); answers come back in order.
        body = b'{"key":"k1"}'
        while queue:
            chunk = [queue.pop() for _ in range(min(pipeline, len(queue)))]
            requests = b"".join(
                (
                    f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
                for token in chunk
            )
            sent = time.perf_counter()
            writer.write(requests)
            for _ in chunk:
                header = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in header.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                payload = await reader.readexactly(length)
                latencies.append((time.perf_counter() - sent) * 1000)
                status = int(header[9:12])
                outcomes[json.loads(payload)["outcome"] if status == 200 else f"http_{status}"] += 1
        writer.close()

    await asyncio.gather(*(worker(r, w) for r, w in conns))
    return latencies, outcomes, first, time.perf_counter()


def _start_client(secret: str, show_id: str, first_index: int, count: int) -> list[str]:
    """In a client process: uvloop, and its buyers' tokens (minted outside the timed part)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return [
        auth.issue(secret, show_id=show_id, role="viewer", name=f"Buyer {i}", user_id=f"b{i}")
        for i in range(first_index, first_index + count)
    ]


def client_main(args: tuple[int, str, str, str, int, int, int, float, int], out: Any) -> None:
    port, sale_id, show_id, secret, first_index, count, connections, start_at, pipeline = args
    tokens = _start_client(secret, show_id, first_index, count)
    latencies, outcomes, first, last = asyncio.run(
        fire(port, sale_id, tokens, connections, start_at)
    )
    # perf_counter is per-process; convert to wall clock for merging across workers.
    offset = time.time() - time.perf_counter()
    out.put((latencies, dict(outcomes), first + offset, last + offset))


# --------------------------------------------------------------------------- WebSocket buyers

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
WS_CONNECT_AT_ONCE = 64  # handshakes in flight per client process while buyers join
FD_LIMIT_MARGIN = 600  # descriptors a process keeps for Redis, logs, pipes


class BuyerSocket(asyncio.Protocol):
    """One connected buyer (msgpack subprotocol), frames parsed in ``data_received``.

    No task and no future per frame: the welcome resolves ``joined``, a ``reply``/``error`` to
    the buy (id 1) calls ``on_decision``; batches (presence, sale stock) are decoded and ignored.
    """

    def __init__(self, request: bytes, on_decision: Any, broadcasts: Counter[str]) -> None:
        self.request = request
        self.on_decision = on_decision
        self.broadcasts = broadcasts  # events received in batches, by type (shared per process)
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.fail(bytes(buf[:12]).decode("latin-1"))
                return
            del buf[: end + 4]
            self.upgraded = True
        pos, size = 0, len(buf)
        while size - pos >= 2:
            opcode, length, header = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, header = (buf[pos + 2] << 8) | buf[pos + 3], 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, header = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if size - pos < header + length:
                break
            payload = bytes(buf[pos + header : pos + header + length])
            pos += header + length
            if opcode == OP_BINARY:
                self.on_frame(msgpack.unpackb(payload))
            elif opcode == OP_PING and self.transport is not None:
                self.transport.write(encode_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self.fail(f"closed {int.from_bytes(payload[:2], 'big') if payload else 1005}")
        if pos:
            del buf[:pos]

    def on_frame(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "welcome":
            if not self.joined.done():
                self.joined.set_result(None)
        elif kind == "batch":
            for event in message.get("events", ()):
                self.broadcasts[event.get("type")] += 1
        elif kind in ("reply", "error") and message.get("id") == 1:
            self.on_decision(self, message)
        elif kind == "error" and not self.joined.done():
            self.fail(str(message.get("code")))

    def fail(self, why: str) -> None:
        if not self.joined.done():
            self.joined.set_exception(RuntimeError(why))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.joined.done():
            self.joined.set_exception(RuntimeError(f"connection lost: {exc}"))


async def connect_buyer(
    port: int, source_ip: str, path: str, on_decision: Any, broadcasts: Counter[str]
) -> BuyerSocket:
    """Open one buyer's WebSocket from ``source_ip`` (its own ephemeral port range) and wait for the welcome."""
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: liveshop.msgpack\r\n\r\n"
    ).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source_ip, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        _, buyer = await loop.create_connection(
            lambda: BuyerSocket(request, on_decision, broadcasts), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    await asyncio.wait_for(buyer.joined, 60)
    return buyer


async def ws_stampede(
    port: int, sale_id: str, show_id: str, tokens: list[str], source_ip: str, in_flight: int,
    ready: Any, go: Any,
) -> tuple[list[float], Counter[str], float, float, int]:  # fmt: skip
    """Connect every buyer (untimed), report ready, wait for the start time, then each buyer sends
    one buy frame; at most ``in_flight`` attempts of this process are outstanding at a time."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    done: asyncio.Future[None] = loop.create_future()
    frame = msgpack.packb({"type": "buy", "id": 1, "sale_id": sale_id, "key": "k1"})
    buyers: list[BuyerSocket] = []
    queue: list[BuyerSocket] = []
    broadcasts: Counter[str] = Counter()

    def send_next() -> None:
        buyer = queue.pop()
        buyer.sent_at = time.perf_counter()
        assert buyer.transport is not None
        buyer.transport.write(buyer.frame)  # type: ignore[attr-defined]

    def on_decision(buyer: BuyerSocket, message: dict[str, Any]) -> None:
        latencies.append((time.perf_counter() - buyer.sent_at) * 1000)
        outcomes[message["outcome"] if message["type"] == "reply" else message["code"]] += 1
        if queue:
            send_next()
        elif len(latencies) == len(buyers) and not done.done():
            done.set_result(None)

    gate = asyncio.Semaphore(WS_CONNECT_AT_ONCE)

    async def join(token: str) -> BuyerSocket | None:
        async with gate:
            try:
                path = f"/ws/{show_id}?token={token}"
                return await connect_buyer(port, source_ip, path, on_decision, broadcasts)
            except (OSError, RuntimeError, TimeoutError) as exc:
                print(f"buyer failed to join: {exc}", file=sys.stderr)
                return None

    buyers = [b for b in await asyncio.gather(*(join(t) for t in tokens)) if b is not None]
    for buyer in buyers:
        buyer.frame = encode_frame(OP_BINARY, frame)  # type: ignore[attr-defined]  # masked now, not in the timed part
    queue = list(reversed(buyers))
    ready.put(len(buyers))
    start_at = await loop.run_in_executor(None, go.get)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    broadcasts.clear()  # count only what arrives during the stampede
    first = time.perf_counter()
    for _ in range(min(in_flight, len(queue))):
        send_next()
    if buyers:
        await asyncio.wait_for(done, 300)
    last = time.perf_counter()
    for buyer in buyers:
        if buyer.transport is not None:
            buyer.transport.abort()
    return latencies, outcomes, first, last, len(tokens) - len(buyers), dict(broadcasts)


def ws_client_main(args: tuple[Any, ...], ready: Any, go: Any, out: Any) -> None:
    port, sale_id, show_id, secret, first_index, count, in_flight, source_ip = args
    tokens = _start_client(secret, show_id, first_index, count)
    latencies, outcomes, first, last, failed, broadcasts = asyncio.run(
        ws_stampede(port, sale_id, show_id, tokens, source_ip, in_flight, ready, go)
    )
    offset = time.time() - time.perf_counter()
    out.put((latencies, dict(outcomes), first + offset, last + offset, failed, broadcasts))


def cpu_busy_s() -> float:
    """CPU-seconds the whole machine spent busy (all processes) since boot, from /proc/stat."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pids: list[int]) -> float:
    """CPU-seconds used so far by these processes (utime + stime)."""
    total = 0
    for pid in pids:
        try:
            parts = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes, in MB."""
    total = 0
    for pid in pids:
        try:
            total += int(open(f"/proc/{pid}/statm").read().split()[1])
        except OSError:
            pass
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_round(url: str, secret: str, opts: argparse.Namespace, pids: list[int]) -> dict[str, Any]:
    created = http(url + "/api/shows", "POST", {"title": "Flash sale benchmark"}, BENCH_API_KEY)
    show_id, host = created["show"]["id"], created["host_token"]
    product = http(
        f"{url}/api/shows/{show_id}/products",
        "POST",
        {"title": "Aero Runner", "price": 8900, "stock": opts.units},
        host,
    )
    sale = http(
        f"{url}/api/shows/{show_id}/sales", "POST",
        {"product_id": product["product"]["id"], "quantity": opts.units, "price": 4900, "per_user_limit": 1, "duration_s": 3600},
        host,
    )["sale"]  # fmt: skip
    port = int(url.rsplit(":", 1)[1])
    share = opts.buyers // opts.clients
    counts = [share] * (opts.clients - 1) + [opts.buyers - share * (opts.clients - 1)]
    queue: Any = mp.Queue()
    workers = []
    joined, ready_s, server_rss_mb = opts.buyers, 0.0, 0.0
    if opts.transport == "http":
        start_at = time.time() + 2.0 + opts.buyers / 40_000  # after every worker minted its tokens
        for c, count in enumerate(counts):
            args = (port, sale["id"], show_id, secret, c * share, count, opts.connections, start_at,
                    opts.pipeline)  # fmt: skip
            workers.append(mp.Process(target=client_main, args=(args, queue)))
        for w in workers:
            w.start()
    else:
        ready: Any = mp.Queue()
        gos = [mp.Queue() for _ in counts]
        for c, count in enumerate(counts):
            # Each client connects from its own 127.0.x.y: its own ephemeral port range.
            source_ip = f"127.0.{1 + c // 200}.{10 + c % 200}"
            args = (port, sale["id"], show_id, secret, c * share, count, opts.connections,
                    source_ip)  # fmt: skip
            workers.append(mp.Process(target=ws_client_main, args=(args, ready, gos[c], queue)))
        joining = time.time()
        for w in workers:
            w.start()
        joined = sum(ready.get() for _ in workers)  # every buyer connected and welcomed, untimed
        ready_s = time.time() - joining
        if not opts.json:
            print(
                f"{joined} buyers joined in {ready_s:.1f} s; stampede in {opts.settle} s",
                flush=True,
            )
        time.sleep(opts.settle)  # let the join storm's presence updates drain
        server_rss_mb = proc_rss_mb(pids[: opts.servers])
    busy_before, ours_before, wall_before = cpu_busy_s(), proc_cpu_s(pids), time.time()
    redis_before = proc_cpu_s(pids[opts.servers :])
    client_pids = [w.pid for w in workers if w.pid]
    client_before = proc_cpu_s(client_pids) if opts.transport == "ws" else 0.0
    if opts.transport == "ws":
        start_at = time.time() + 0.5
        for go in gos:
            go.put(start_at)
    results = [queue.get() for _ in workers]
    client_cpu = proc_cpu_s(client_pids) - client_before
    busy, ours, wall = (
        cpu_busy_s() - busy_before,
        proc_cpu_s(pids) - ours_before,
        time.time() - wall_before,
    )
    redis_cpu = proc_cpu_s(pids[opts.servers :]) - redis_before
    for w in workers:
        w.join()
    latencies = sorted(x for r in results for x in r[0])
    outcomes: Counter[str] = Counter()
    for r in results:
        outcomes.update(r[1])
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    state = http(f"{url}/api/sales/{sale['id']}")["sale"]
    listed, cursor = 0, None
    while True:
        page = http(
            f"{url}/api/shows/{show_id}/orders?limit=5000"
            + (f"&cursor={cursor}" if cursor else ""),
            token=host,
        )
        listed += len(page["orders"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    result: dict[str, Any] = {"transport": opts.transport}
    if opts.transport == "ws":
        result["connected_buyers"] = joined
        result["join_failures"] = sum(r[4] for r in results)
        result["join_s"] = round(ready_s, 1)
        result["server_rss_mb"] = round(server_rss_mb)
        received: Counter[str] = Counter()
        for r in results:
            received.update(r[5])
        # Broadcast events every connected buyer received while the stampede ran (fan-out load).
        result["broadcast_events_per_buyer"] = {
            kind: round(n / max(joined, 1), 2) for kind, n in received.items()
        }
    return result | {
        "attempts": len(latencies),
        "seconds": round(elapsed, 3),
        "attempts_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1], 2),
        "outcomes": dict(outcomes),
        "server_sold_plus_reserved": state["sold"] + state["reserved"],
        "server_left": state["left"],
        "orders_listed": listed,
        "machine": {
            "wall_s": round(wall, 1),
            "cpus": os.cpu_count(),
            "busy_pct": round(100 * busy / (wall * (os.cpu_count() or 1)), 1),
            "server_and_redis_cpu_s": round(ours, 1),
            "redis_cpu_s": round(redis_cpu, 1),
            "client_cpu_s": round(client_cpu, 1),
            "other_cpu_s": round(max(0.0, busy - ours - client_cpu), 1),
            "loadavg_1m": os.getloadavg()[0],
        },
        "exact": state["sold"] + state["reserved"]
        == opts.units
        == outcomes.get("reserved", 0)
        == listed
        and len(latencies) == joined,
    }


async def core_round(redis_url: str, opts: argparse.Namespace, batch: int) -> dict[str, Any]:
    """The decision path alone, in-process: attempts → BuyBatcher → buy.lua (no HTTP).

    ``batch`` caps attempts per script call; 1 is the one-EVALSHA-per-attempt baseline.
    """
    from aiohttp import web

    from server.appkeys import REDIS, SETTINGS
    from server.commerce import sales
    from server.commerce.products import create_product
    from server.config import Settings
    from server.redis.store import connect

    app = web.Application()
    app[SETTINGS] = Settings()
    app[REDIS] = await connect(redis_url)
    app[sales.BATCHERS] = {}
    show_id = "bench" + secrets.token_hex(4)
    product = await create_product(app, show_id, {"title": "P", "price": 100, "stock": opts.units})
    sale = await sales.create_sale(
        app, show_id, {"product_id": product["id"], "quantity": opts.units, "price": 50}
    )
    claims = [
        auth.Claims(f"b{i}", f"Buyer {i}", "viewer", show_id, 2**40) for i in range(opts.buyers)
    ]
    old_cap, sales.MAX_BATCH = sales.MAX_BATCH, batch
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    next_buyer = iter(claims)

    from server.commerce import keys as ck
    from server.commerce.scripts import BUY

    keys, gate = ck.buy_script_keys(show_id), asyncio.Semaphore(50)

    async def unbatched(claim: auth.Claims) -> dict[str, Any]:
        async with gate:  # 50 Redis connections, one EVALSHA per attempt
            attempt = msgpack.packb([sale["id"], claim.user_id, claim.name, "k1"])
            raw = await BUY(app, keys, [show_id, 300_000, 1, attempt])
        return sales.outcome_body(sale["id"], raw[0])

    async def buyer_loop() -> None:
        for claim in next_buyer:
            sent = time.perf_counter()
            reply = await (
                unbatched(claim) if batch == 1 else sales.buy(app, claim, sale["id"], "k1")
            )
            latencies.append((time.perf_counter() - sent) * 1000)
            outcomes[reply["outcome"]] += 1

    started = time.perf_counter()
    await asyncio.gather(*(buyer_loop() for _ in range(opts.concurrency)))
    elapsed = time.perf_counter() - started
    sales.MAX_BATCH = old_cap
    batcher = app[sales.BATCHERS].get(show_id) or sales.BuyBatcher(app, show_id)
    state = await sales.get_sale(app, sale["id"])
    await app[REDIS].aclose()
    latencies.sort()
    return {
        "mode": "core, one EVALSHA per attempt (50 connections)"
        if batch == 1
        else f"core, micro-batched (max {batch} per call)",
        "attempts": len(latencies),
        "attempts_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "script_calls": batcher.batches or len(latencies),
        "mean_batch": round(batcher.attempts / batcher.batches, 1) if batcher.batches else 1,
        "outcomes": dict(outcomes),
        "exact": state["reserved"] == opts.units == outcomes.get("reserved", 0),
    }


def check_descriptors(opts: argparse.Namespace) -> None:
    """Each WebSocket buyer holds a descriptor in a client and in a server process: fail early, clearly."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))  # children inherit the hard limit
    per_client = -(-opts.buyers // opts.clients)
    per_server = -(-opts.buyers // opts.servers) * 1.05  # SO_REUSEPORT spreads by hash, not exactly
    usable = limit - FD_LIMIT_MARGIN
    if per_client > usable or per_server > usable:
        sys.exit(
            f"{opts.buyers} connected buyers need {per_client} descriptors per client and about "
            f"{per_server:.0f} per server process; the limit is {limit}: raise --clients/--servers"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--buyers", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=2, help="server processes sharing the port")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--transport", choices=("http", "ws"), default="http",
        help="http: POST /api/sales/{id}/buy; ws: every buyer is a connected viewer sending one buy frame",
    )  # fmt: skip
    parser.add_argument(
        "--connections", type=int, default=64,
        help="http: keep-alive connections per client process; ws: attempts in flight per client process",
    )  # fmt: skip
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="ws: seconds between the last join and the stampede",
    )
    parser.add_argument(
        "--pipeline", type=int, default=1, help="HTTP/1.1 requests in flight per connection"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--redis-url", default="", help="use this Redis instead of a private embedded one"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument(
        "--core", action="store_true",
        help="also measure the decision path alone (in-process batcher, batched and unbatched)",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency", type=int, default=2000, help="in-flight attempts for --core"
    )
    opts = parser.parse_args()
    if opts.transport == "ws":
        check_descriptors(opts)
    secret = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="flashbench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis = None
        redis_url = opts.redis_url
        if not redis_url:
            redis = EmbeddedRedis(tmp / "redis")
            redis_url = redis.start()
        core = []
        if opts.core:
            for batch in (1, 1000):
                result = asyncio.run(core_round(redis_url, opts, batch))
                core.append(result)
                if not opts.json:
                    print(f"core: {json.dumps(result)}", flush=True)
        url, procs = start_servers(opts.servers, redis_url, secret, tmp)
        redis_pids = [redis.process.pid] if redis and redis.process else []
        try:
            rounds = []
            for n in range(opts.rounds):
                result = run_round(url, secret, opts, [p.pid for p in procs] + redis_pids)
                rounds.append(result)
                if not opts.json:
                    print(f"round {n + 1}: {json.dumps(result)}", flush=True)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
            if redis:
                redis.stop()
    summary = {
        "buyers": opts.buyers,
        "units": opts.units,
        "servers": opts.servers,
        "clients": opts.clients,
        "transport": opts.transport,
        "connections_per_client": opts.connections,
        "pipeline": opts.pipeline,
        "cpus": os.cpu_count(),
        "median_attempts_per_s": statistics.median(r["attempts_per_s"] for r in rounds),
        "median_p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "median_p99_ms": statistics.median(r["p99_ms"] for r in rounds),
        "all_exact": all(r["exact"] for r in rounds),
        "rounds": rounds,
        "core": core,
    }
    print(json.dumps(summary, indent=None if opts.json else 2))


if __name__ == "__main__":
    main()

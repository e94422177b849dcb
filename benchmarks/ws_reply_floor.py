"""The floor under a WebSocket buy: one frame in, one frame out, per connected buyer, and nothing else.

    .venv/bin/python benchmarks/ws_reply_floor.py --buyers 24000 --servers 2 --clients 2

``--servers`` processes (uvloop, SO_REUSEPORT) accept raw TCP connections and answer every
received WebSocket frame with one pre-built 40-byte frame, from ``data_received``: no HTTP, no
aiohttp, no task, no Redis. The clients are the same lean buyers as ``flash_sale.py --transport
ws`` (each connection sends one masked frame, at most ``--in-flight`` per client process
outstanding). Whatever this reaches is the most any Python server on this machine can decide
over one socket per buyer: the per-attempt syscalls (client send, server recv, server send,
client recv, epoll) and the loopback TCP work are all that is left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.lean_ws import OP_BINARY, encode_frame  # noqa: E402

REPLY = bytes([0x82, 38]) + b"r" * 38  # an unmasked binary frame, the size of a sold_out reply


class Answerer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(REPLY)


def server_main(port: int) -> None:
    import uvloop

    async def run() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(Answerer, "127.0.0.1", port, reuse_port=True, backlog=4096)
        await asyncio.Event().wait()

    uvloop.run(run())


class Buyer(asyncio.Protocol):
    def __init__(self, on_reply: Any) -> None:
        self.on_reply = on_reply
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.on_reply(self)


async def fire(port: int, count: int, in_flight: int, source_ip: str, ready: Any, go: Any) -> Any:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    done: asyncio.Future[None] = loop.create_future()
    queue: list[Buyer] = []
    frame = encode_frame(
        OP_BINARY, b"\x84\xa4type\xa3buy\xa2id\x01\xa7sale_id\xa5x.s1\xa3key\xa2k1"
    )

    def send_next() -> None:
        buyer = queue.pop()
        buyer.sent_at = time.perf_counter()
        buyer.transport.write(frame)

    def on_reply(buyer: Buyer) -> None:
        latencies.append((time.perf_counter() - buyer.sent_at) * 1000)
        if queue:
            send_next()
        elif len(latencies) == count and not done.done():
            done.set_result(None)

    gate = asyncio.Semaphore(64)

    async def connect() -> Buyer:
        async with gate:
            sock = socket.socket()
            sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
            sock.bind((source_ip, 0))
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            _, buyer = await loop.create_connection(lambda: Buyer(on_reply), sock=sock)
            return buyer

    buyers = await asyncio.gather(*(connect() for _ in range(count)))
    queue = list(buyers)
    ready.put(len(buyers))
    start_at = await loop.run_in_executor(None, go.get)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    first = time.perf_counter()
    for _ in range(min(in_flight, len(queue))):
        send_next()
    await asyncio.wait_for(done, 300)
    last = time.perf_counter()
    for buyer in buyers:
        buyer.transport.abort()
    offset = time.time() - time.perf_counter()
    return latencies, first + offset, last + offset


def client_main(args: tuple[Any, ...], ready: Any, go: Any, out: Any) -> None:
    import uvloop

    out.put(uvloop.run(fire(*args, ready, go)))


def cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        parts = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(parts[11]) + int(parts[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--buyers", type=int, default=24000)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=64, help="per client process")
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    servers = [
        mp.Process(target=server_main, args=(port,), daemon=True) for _ in range(opts.servers)
    ]
    for s in servers:
        s.start()
    time.sleep(1.0)
    rounds = []
    try:
        for _ in range(opts.rounds):
            ready, out = mp.Queue(), mp.Queue()
            gos = [mp.Queue() for _ in range(opts.clients)]
            share = opts.buyers // opts.clients
            clients = [
                mp.Process(
                    target=client_main,
                    args=((port, share, opts.in_flight, f"127.0.1.{10 + c}"), ready, gos[c], out),
                )
                for c in range(opts.clients)
            ]
            for c in clients:
                c.start()
            for _ in clients:
                ready.get()
            time.sleep(1.0)
            pids = [s.pid for s in servers if s.pid] + [c.pid for c in clients if c.pid]
            before_servers = cpu_s(pids[: opts.servers])
            before_clients = cpu_s(pids[opts.servers :])
            start_at = time.time() + 0.3
            for go in gos:
                go.put(start_at)
            results = [out.get() for _ in clients]
            server_cpu = cpu_s(pids[: opts.servers]) - before_servers
            client_cpu = cpu_s(pids[opts.servers :]) - before_clients
            for c in clients:
                c.join()
            latencies = sorted(x for r in results for x in r[0])
            elapsed = max(r[2] for r in results) - min(r[1] for r in results)
            n = len(latencies)
            rounds.append(
                {
                    "attempts": n,
                    "attempts_per_s": round(n / elapsed),
                    "p50_ms": round(latencies[n // 2], 2),
                    "p99_ms": round(latencies[int(n * 0.99)], 2),
                    "server_us_per_attempt": round(server_cpu / n * 1e6),
                    "client_us_per_attempt": round(client_cpu / n * 1e6),
                    "loadavg_1m": os.getloadavg()[0],
                }
            )
            print(json.dumps(rounds[-1]), flush=True)
    finally:
        for s in servers:
            s.terminate()
    print(
        json.dumps(
            {
                "median_attempts_per_s": statistics.median(r["attempts_per_s"] for r in rounds),
                "median_server_us_per_attempt": statistics.median(
                    r["server_us_per_attempt"] for r in rounds
                ),
                "median_client_us_per_attempt": statistics.median(
                    r["client_us_per_attempt"] for r in rounds
                ),
            }
        )
    )


if __name__ == "__main__":
    main()

"""The floor under the relay's per-packet cost: each step of forwarding one RTP packet, timed alone.

What one forwarded packet costs the relay (see media/consumer.py and
media/aiortc_internals.py), step by step, in CPU µs of this process (user + system, so the
kernel's loopback delivery, which runs on the sender's CPU, is included):

* ``header``       rewrite the 12-byte RTP header and concatenate it with the payload
* ``protect``      pylibsrtp ``Session.protect`` (AEAD AES-256-GCM, what aiortc negotiates)
* ``protect_into`` the same libsrtp call on a preallocated buffer (header packed into it)
* ``sendto_uv``    uvloop ``DatagramTransport.sendto`` of a 1,200-byte datagram to a
                   loopback socket read by another process
* ``sendto_raw``   ``socket.sendto`` of the same datagram on the same kind of socket
* ``path_before``  header + ``protect`` + ``sendto_uv``: the relay's write before this change
* ``path_after``   ``media.aiortc_internals.rtp_writer`` on ``socket.sendto``: the Python writer
* ``forward_py``   ``Consumer.forward`` per viewer on the Python writer (the pure-Python path)
* ``fan_out_c``    one ``media._fastpath.fan_out`` call per burst, C writers (the fast path)

Sends go to ``--sockets`` receiving sockets (one per simulated viewer) in a separate
process that drains them, in bursts of one packet per socket paced at ``--rate`` bursts
per second, like a publisher's packet fanned out (167/s: a 720p30 stream with its audio);
the receiver reports how many arrived. Packets processed one burst at a time, with the
CPU idle in between, cost more than in a tight loop (cold caches): ``header``,
``protect`` and ``protect_into`` run in a tight loop, the sends at the given rate.

    .venv/bin/python benchmarks/relay_floor.py [--packets 200000] [--sockets 40] [--rate 167]
"""

# ruff: noqa: ASYNC220, ASYNC251  (a benchmark pacing itself with blocking calls on purpose)
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import uvloop
from pylibsrtp import Policy, Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiortc.rtp import RtpPacket  # noqa: E402

from media import fastpath  # noqa: E402
from media.aiortc_internals import native_rtp_writer, rtp_writer  # noqa: E402
from media.consumer import LIVE, Consumer  # noqa: E402

PAYLOAD = bytes(range(256)) * 4 + bytes(176)  # 1,200 bytes: a full video packet at 1.5 Mbps
HDR = struct.Struct("!BBHII")

RECEIVER = r"""
import selectors, socket, sys
n = int(sys.argv[1])
sel = selectors.DefaultSelector()
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
sel.register(sys.stdin, selectors.EVENT_READ)
count = 0
while True:
    for key, _ in sel.select():
        if key.fileobj is sys.stdin:
            if not sys.stdin.readline():
                sys.exit(0)
            print(count, flush=True)
            count = 0
            continue
        s = key.fileobj
        while True:
            try:
                s.recv(2048)
            except BlockingIOError:
                break
            count += 1
"""


def srtp_session() -> Session:
    policy = Policy(
        key=bytes(range(44)),
        ssrc_type=Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
    )
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def cpu_per_call(step: Callable[[int], None], count: int) -> float:
    """CPU µs (this process, user + system) per call of ``step(i)``."""
    first = _calls.get(step, 0)  # each step's indexes only move forward (libsrtp's replay check)
    _calls[step] = first + count
    t0 = time.process_time()
    for i in range(first, first + count):
        step(i)
    return (time.process_time() - t0) / count * 1e6


_calls: dict[Callable[[int], None], int] = {}


_burst = 0  # sequence numbers only move forward: libsrtp refuses an index far behind


def paced_cpu(send: Callable[[int, int], None], count: int, sockets: int, rate: float) -> float:
    """CPU µs per packet sending ``count`` packets in bursts of ``sockets`` at ``rate``/s."""
    global _burst
    gap = 1.0 / rate
    bursts = count // sockets
    first, _burst = _burst, _burst + bursts
    t0 = time.process_time()
    due = time.monotonic()
    for b in range(first, first + bursts):
        for k in range(sockets):
            send(b, k)
        due += gap
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return (time.process_time() - t0) / (bursts * sockets) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--sockets", type=int, default=40)
    parser.add_argument("--rate", type=float, default=167.0, help="bursts per second")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(args.sockets)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None and receiver.stdin is not None
    ports = [int(p) for p in receiver.stdout.readline().split()]
    addrs = [("127.0.0.1", p) for p in ports]

    loop = asyncio.get_running_loop()
    transports = []
    raws = []
    for _ in addrs:
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind(("127.0.0.1", 0))
        raw.setblocking(False)
        raws.append(raw)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
        transports.append(transport)
    sessions = [srtp_session() for _ in addrs]
    writers = [  # own sessions: libsrtp refuses an index far behind one it already used
        rtp_writer(srtp_session(), r.sendto, a, t.sendto)
        for r, t, a in zip(raws, transports, addrs, strict=True)
    ]
    datagram = HDR.pack(0x80, 96, 1, 2, 3) + PAYLOAD
    n = args.packets

    def header(i: int) -> None:
        HDR.pack(0x80, 0x80 | 96, i & 0xFFFF, i * 3000 & 0xFFFFFFFF, 1234) + PAYLOAD

    protect = srtp_session().protect

    def protect_only(i: int) -> None:
        protect(HDR.pack(0x80, 96, i & 0xFFFF, 0, 1234) + PAYLOAD)

    into = rtp_writer(srtp_session(), lambda data, addr: None, addrs[0])

    def protect_into(i: int) -> None:
        into(PAYLOAD, 1, 96, i & 0xFFFF, 0, 1234)

    def sendto_uv(b: int, k: int) -> None:
        transports[k].sendto(datagram, addrs[k])

    def sendto_raw(b: int, k: int) -> None:
        raws[k].sendto(datagram, addrs[k])

    def path_before(b: int, k: int) -> None:
        transports[k].sendto(
            sessions[k].protect(
                HDR.pack(0x80, 96, b & 0xFFFF, b * 3000 & 0xFFFFFFFF, 99) + PAYLOAD
            ),
            addrs[k],
        )

    def path_after(b: int, k: int) -> None:
        writers[k](PAYLOAD, 0, 96, b & 0xFFFF, b * 3000 & 0xFFFFFFFF, 99)

    def consumer(write: Callable[..., None]) -> Consumer:
        """A live Consumer without a peer connection: just what forward() reads."""
        c = Consumer.__new__(Consumer)
        c.state, c.seq_off, c.ts_off, c.pt, c.ssrc = LIVE, 7, 9, 96, 99
        c.packets = c.octets = 0
        c._send = write
        return c

    py_consumers = [
        consumer(rtp_writer(srtp_session(), r.sendto, a, t.sendto))
        for r, t, a in zip(raws, transports, addrs, strict=True)
    ]
    ext = fastpath.native()
    c_consumers = [
        consumer(native_rtp_writer(srtp_session(), r, a, t.sendto))
        for r, t, a in zip(raws, transports, addrs, strict=True)
    ]
    packet = RtpPacket(payload_type=96, marker=0, ssrc=1234, payload=PAYLOAD)

    def forward_py(b: int, k: int) -> None:
        if k == 0:
            packet.sequence_number, packet.timestamp = b & 0xFFFF, b * 3000 & 0xFFFFFFFF
        py_consumers[k].forward(packet)

    def fan_out_c(b: int, k: int) -> None:
        if k == 0:  # one call per burst sends to every socket
            packet.sequence_number, packet.timestamp = b & 0xFFFF, b * 3000 & 0xFFFFFFFF
            ext.fan_out(c_consumers, packet, LIVE)  # type: ignore[union-attr]

    def delivered() -> int:
        receiver.stdin.write("\n")  # type: ignore[union-attr]
        receiver.stdin.flush()  # type: ignore[union-attr]
        time.sleep(0.2)
        return int(receiver.stdout.readline())  # type: ignore[union-attr]

    results: dict[str, list[float]] = {}
    arrived: dict[str, list[float]] = {}
    delivered()
    for _ in range(args.repeats):
        for name, step in (
            ("header", header),
            ("protect", protect_only),
            ("protect_into", protect_into),
        ):
            results.setdefault(name, []).append(cpu_per_call(step, n))
        for name, send in (
            ("sendto_uv", sendto_uv),
            ("sendto_raw", sendto_raw),
            ("path_before", path_before),
            ("path_after", path_after),
            ("forward_py", forward_py),
        ) + ((("fan_out_c", fan_out_c),) if ext is not None else ()):
            results.setdefault(name, []).append(paced_cpu(send, n, args.sockets, args.rate))
            sent = n // args.sockets * args.sockets
            arrived.setdefault(name, []).append(delivered() / sent)
    receiver.stdin.close()
    receiver.wait(5)

    print(
        f"{n} packets of {len(datagram)} B per run, {args.sockets} receiving sockets in another process, "
        f"{args.rate:g} bursts/s, median of {args.repeats} runs; load {os.getloadavg()[0]:.2f}"
    )
    for name, values in results.items():
        extra = ""
        if name in arrived:
            extra = f"   delivered {statistics.median(arrived[name]) * 100:5.1f}%"
        print(
            f"{name:13s} {statistics.median(values):6.2f} µs/packet  (min {min(values):.2f}){extra}"
        )


if __name__ == "__main__":
    uvloop.run(main())

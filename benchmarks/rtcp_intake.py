"""CPU per incoming viewer RTCP datagram: the intake (media/consumer_rtcp.py) against aiortc's path.

In one process: a Relay, a small publisher and one light viewer over loopback. Receiver
reports that the viewer's own SRTP session protected (so they authenticate like real ones)
are handed to the server's ICE socket callback one at a time, each followed by the same
event-loop turns, with the intake installed (socket callback → unprotect → parse → consumer)
and with it removed (aiortc: aioice queue → the DTLS task → five coroutines → the sender's
handler → the consumer). Reported: the event-loop thread's CPU µs per datagram, minus the same loop turns
with no datagram. The kernel's receive and the event loop's poll are the same on both paths
and not in these numbers.

    .venv/bin/python benchmarks/rtcp_intake.py [--datagrams 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket  # noqa: E402

from media import fastpath  # noqa: E402
from media.aiortc_internals import (  # noqa: E402
    configure_ice,
    intercept_srtcp,
    nominated_protocol,
    srtcp_protect,
)
from media.light_viewer import LightViewer  # noqa: E402
from media.publish import EncodedVideoTrack, PublishOptions, prefer_codec  # noqa: E402
from media.relay import Relay, RelayConfig  # noqa: E402

TURNS = 2  # loop turns after each datagram: enough for aiortc's DTLS task to run it
CHUNK = 64


async def turns() -> None:
    for _ in range(TURNS):
        await asyncio.sleep(0)


async def run(datagrams: int, rounds: int) -> None:
    configure_ice(["127.0.0.1"])
    relay = Relay(RelayConfig(connect_timeout_s=10.0))
    options = PublishOptions(codec="vp8", width=160, height=120, fps=5, audio=False)
    pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pub.addTrack(EncodedVideoTrack(options))
    prefer_codec(pub, "vp8")
    await pub.setLocalDescription(await pub.createOffer())
    session = await relay.publish("bench", pub.localDescription.sdp)
    await pub.setRemoteDescription(RTCSessionDescription(sdp=session.answer, type="answer"))  # type: ignore[attr-defined]
    viewer = LightViewer()
    watch = await relay.view("bench", await viewer.offer(), "v")
    await viewer.answer(watch.answer)  # type: ignore[attr-defined]
    for _ in range(400):
        if all(c._intake is not None for c in watch.consumers):
            break
        await asyncio.sleep(0.05)
    consumer = next(c for c in watch.consumers if c.kind == "video")
    dtls = consumer.sender.transport
    intake = consumer._intake
    assert intake is not None, "the intake was not installed"
    protocol, addr = nominated_protocol(dtls)
    protect = srtcp_protect(next(t.receiver.transport for t in viewer.pc.getTransceivers()))
    block = RtcpReceiverInfo(
        ssrc=consumer.ssrc,
        fraction_lost=3,
        packets_lost=1,
        highest_sequence=1000,
        jitter=5,
        lsr=0,
        dlsr=0,
    )
    report = bytes(RtcpRrPacket(ssrc=1234, reports=[block]))
    print(fastpath.describe(), flush=True)
    results: dict[str, list[float]] = {"intake": [], "aiortc": []}
    for _ in range(rounds):
        for mode in ("intake", "aiortc"):
            if mode == "aiortc":
                intake.uninstall()
            before = intake.datagrams
            t0 = time.thread_time()
            for _ in range(datagrams):
                await turns()
            idle = time.thread_time() - t0
            busy = 0.0
            for _ in range(datagrams // CHUNK):
                # protected anew, in chunks: each has its own SRTCP index, and the viewer's
                # own reports in between stay inside libsrtp's replay window
                data = [protect(report) for _ in range(CHUNK)]
                t0 = time.thread_time()
                for d in data:
                    protocol.datagram_received(d, addr)
                    await turns()
                busy += time.thread_time() - t0
            n = datagrams // CHUNK * CHUNK
            if mode == "aiortc":
                assert intake.datagrams == before
                assert intercept_srtcp(dtls, intake)  # back on for the next round
            else:
                assert intake.datagrams - before == n and intake.dropped == 0
            results[mode].append((busy - idle * n / datagrams) / n * 1e6)
            print(
                f"{mode:7s} {results[mode][-1]:6.2f} µs per RTCP datagram "
                f"(loop turns alone {idle / datagrams * 1e6:.2f} µs)",
                flush=True,
            )
    a, b = statistics.median(results["intake"]), statistics.median(results["aiortc"])
    print(
        f"median: intake {a:.2f} µs, aiortc {b:.2f} µs per datagram ({a / b:.2f}×); "
        f"load {os.getloadavg()[0]:.1f}"
    )
    await viewer.pc.close()
    await pub.close()
    await relay.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datagrams", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.datagrams, args.rounds))


if __name__ == "__main__":
    main()

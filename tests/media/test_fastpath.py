"""The C fast path (media/_fastpath.c) against the pure-Python writer: same bytes, same viewers.

The unit tests drive both writers with identical libsrtp sessions over real UDP sockets and
compare the datagrams byte for byte (then decrypt them); the relay test puts one viewer on
each path in the same show and compares what each viewer's aiortc decrypts.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from media import fastpath
from media.aiortc_internals import native_rtp_writer, rtp_writer, srtp_pointers
from media.consumer import LIVE, SYNC, Consumer
from media.light_viewer import LightViewer
from media.producer import Producer
from media.publish import PublishOptions
from media.relay import Relay, RelayConfig

from .peers import SMALL, TestPublisher, srtp_session, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _native_built() -> None:
    if not fastpath.available():
        pytest.fail(f"media fast path not built: {fastpath.describe()} (pip install -e .)")


class Sockets:
    """A sending socket and a receiving one on loopback; ``drain`` reads what arrived."""

    def __init__(self) -> None:
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.settimeout(2.0)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.bind(("127.0.0.1", 0))
        self.addr = self.rx.getsockname()

    def drain(self, n: int) -> list[bytes]:
        return [self.rx.recv(2048) for _ in range(n)]

    def close(self) -> None:
        self.rx.close()
        self.tx.close()


def _packets() -> list[tuple[bytes, int, int, int, int, int]]:
    """Across a sequence-number wrap (libsrtp's rollover counter moves), odd sizes, RTX-like."""
    out = []
    for i in range(300):
        seq = (0xFFFF - 150 + i) & 0xFFFF
        payload = bytes((i * 7 + k) & 0xFF for k in range(1 + (i * 37) % 1400))
        out.append((payload, i % 2, 96 + i % 3, seq, (90000 * i) & 0xFFFFFFFF, 0x1234ABCD))
    out.append((bytes(1488), 1, 127, 5, 0xFFFFFFFF, 0xFFFFFFFF))  # the largest payload that fits
    out.append((b"\x00", 0, 0, 0, 0, 0))
    return out


def _plain(payload: bytes, marker: int, pt: int, seq: int, ts: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, marker << 7 | pt, seq, ts, ssrc) + payload


def test_native_writer_sends_what_the_python_writer_sends() -> None:
    native_sockets, python_sockets = Sockets(), Sockets()
    ours, reference, inbound = (
        srtp_session("SSRC_ANY_OUTBOUND"),
        srtp_session("SSRC_ANY_OUTBOUND"),
        srtp_session("SSRC_ANY_INBOUND"),
    )
    try:
        with fastpath.selected(True):
            native = native_rtp_writer(ours, native_sockets.tx, native_sockets.addr, None)
        assert native is not None and type(native).__module__ == "media._fastpath"
        del ours  # the writer alone must keep the libsrtp context alive
        gc.collect()
        python = rtp_writer(reference, python_sockets.tx.sendto, python_sockets.addr)
        packets = _packets()
        for args in packets:
            native(*args)
            python(*args)
        got_native = native_sockets.drain(len(packets))
        got_python = python_sockets.drain(len(packets))
        assert got_native == got_python  # byte for byte, ROC and all
        # pylibsrtp's unprotect takes ≤ 1,500 bytes: the 1,488-byte payload is compared above only
        decryptable = [(d, a) for d, a in zip(got_native, packets, strict=True) if len(d) <= 1500]
        assert len(decryptable) == len(packets) - 1
        assert [inbound.unprotect(d) for d, _ in decryptable] == [
            _plain(*a) for _, a in decryptable
        ]
        native.close()
        assert native.closed
    finally:
        native_sockets.close()
        python_sockets.close()


def test_burst_uses_one_sendmmsg_and_matches_single_writes() -> None:
    burst_sockets, single_sockets = Sockets(), Sockets()
    a, b = srtp_session("SSRC_ANY_OUTBOUND"), srtp_session("SSRC_ANY_OUTBOUND")
    try:
        with fastpath.selected(True):
            burst = native_rtp_writer(a, burst_sockets.tx, burst_sockets.addr, None)
            single = native_rtp_writer(b, single_sockets.tx, single_sockets.addr, None)
        packets = _packets()[:150]  # more than one sendmmsg batch (BURST_MAX)
        burst.burst(packets)
        for args in packets:
            single(*args)
        assert burst_sockets.drain(len(packets)) == single_sockets.drain(len(packets))
        burst.close()
        single.close()
    finally:
        burst_sockets.close()
        single_sockets.close()


def test_bad_input_is_refused_and_nothing_is_sent() -> None:
    sockets = Sockets()
    sockets.rx.settimeout(0.2)
    with fastpath.selected(True):
        write = native_rtp_writer(srtp_session("SSRC_ANY_OUTBOUND"), sockets.tx, sockets.addr, None)
    try:
        with pytest.raises(ValueError, match="does not fit"):
            write(bytes(1489), 0, 96, 1, 1, 1)
        with pytest.raises(TypeError):
            write(b"x", 0, 96)
        with pytest.raises(TypeError):
            write.burst([(b"x", 0, 96)])
        with pytest.raises(TypeError):
            write(object(), 0, 96, 1, 1, 1)
        with pytest.raises(socket.timeout):
            sockets.rx.recv(2048)
        write.close()
        with pytest.raises(ValueError, match="closed"):
            write(b"x", 0, 96, 1, 1, 1)
        # a scoped or non-numeric address: no C writer, the caller keeps the Python one
        with fastpath.selected(True):
            assert (
                native_rtp_writer(
                    srtp_session("SSRC_ANY_OUTBOUND"), sockets.tx, ("localhost", 9), None
                )
                is None
            )
    finally:
        sockets.close()


def test_refused_send_goes_to_the_fallback() -> None:
    """What the kernel refuses (here: an IPv6 destination on an IPv4 socket) is handed, already
    protected, to the fallback, as the Python writer does with the loop's queued sendto."""
    sockets = Sockets()
    handed: list[tuple[bytes, object]] = []
    session, reference = srtp_session("SSRC_ANY_OUTBOUND"), srtp_session("SSRC_ANY_OUTBOUND")
    try:
        from media import _fastpath  # the module itself: build the mismatched writer directly

        ctx, protect = srtp_pointers(session)
        write = _fastpath.Writer(
            ctx,
            protect,
            os.dup(sockets.tx.fileno()),
            socket.AF_INET6,
            "::1",
            9,
            session,
            lambda data, addr: handed.append((data, addr)),
        )
        write(b"hello", 1, 96, 7, 9000, 42)
        assert handed == [(reference.protect(_plain(b"hello", 1, 96, 7, 9000, 42)), ("::1", 9))]
        failing = _fastpath.Writer(
            ctx, protect, os.dup(sockets.tx.fileno()), socket.AF_INET6, "::1", 9, session, None
        )
        with pytest.raises(OSError):
            failing(b"hello", 1, 96, 8, 9000, 42)
        write.close()
        failing.close()
        with pytest.raises(ValueError, match="numeric"):
            _fastpath.Writer(ctx, protect, 0, socket.AF_INET, "nowhere", 9, session, None)
        with pytest.raises(ValueError, match="null"):
            _fastpath.Writer(0, protect, 0, socket.AF_INET, "127.0.0.1", 9, session, None)
    finally:
        sockets.close()


def test_srtp_failure_raises_pylibsrtp_error() -> None:
    """A session that refuses to protect (replayed sequence, no allow_repeat_tx) raises
    pylibsrtp's own Error from the C writer, like the Python writer."""
    policy = Policy(
        key=bytes(range(44)),
        ssrc_type=Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
    )
    policy.allow_repeat_tx = False
    sockets = Sockets()
    try:
        with fastpath.selected(True):
            write = native_rtp_writer(Session(policy), sockets.tx, sockets.addr, None)
        write(b"once", 0, 96, 1, 1, 1)
        with pytest.raises(SrtpError):
            write(b"twice", 0, 96, 1, 1, 1)
        write.close()
    finally:
        sockets.close()


def test_pure_python_path_is_chosen_without_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """LIVESHOP_FASTPATH=0, no built extension or one built from older source: the Python
    writer and per-viewer forward."""
    probe = (
        "import sys\n"
        "if sys.argv[1] == 'hide': sys.modules['media._fastpath'] = None\n"
        "if sys.argv[1] == 'stale': import media._fastpath as built; built.INTERFACE = 0\n"
        "from media import fastpath, producer\n"
        "print(fastpath.native() is None, producer._native_fan_out is fastpath._all_forward)\n"
        "print(fastpath.describe())\n"
    )
    for mode, env, why in (
        ("env", "0", "disabled by LIVESHOP_FASTPATH=0"),
        ("hide", "1", "not built"),
        ("stale", "1", "stale build (interface 0, this source needs 1"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", probe, mode],
            cwd=ROOT,
            env={**os.environ, "LIVESHOP_FASTPATH": env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.splitlines()
        assert out[0] == "True True", out
        assert why in out[1], out
    monkeypatch.setattr(fastpath, "_native", None)
    with pytest.raises(RuntimeError, match="requested"), fastpath.selected(True):
        pass


class RecordingViewer(LightViewer):
    """A light viewer that also keeps every decrypted video RTP packet it receives."""

    def _rtp_handler(self, kind: str):  # type: ignore[no-untyped-def]
        counted = super()._rtp_handler(kind)
        if kind == "video":
            self.video: list[RtpPacket] = []

        def on_rtp(packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
            counted(packet, codec)
            if kind == "video":
                self.video.append(packet)

        return on_rtp


async def test_viewers_on_both_paths_receive_the_same_bytes() -> None:
    """One show, one viewer per path: after both are live, every video packet the two viewers
    decrypt is the same payload, marker and payload type, with sequence numbers and timestamps
    at a constant offset (each viewer has its own random base) — what forward() promises."""
    relay = Relay(RelayConfig(connect_timeout_s=10.0))
    pub = TestPublisher(PublishOptions(codec="vp8", keyint_s=1.0, audio=False, **SMALL))
    viewers: dict[bool, RecordingViewer] = {}
    try:
        await pub.publish(relay, "both")
        for native in (True, False):
            with fastpath.selected(native):
                v = RecordingViewer()
                session = await relay.view("both", await v.offer(), f"v{native}")
                await v.answer(session.answer)  # type: ignore[attr-defined]
                assert await wait_until(
                    lambda s=session: all(c._send is not None for c in s.consumers), 20
                ), (v.pc.connectionState, session.pc.connectionState)
                writer = fastpath._native.Writer  # type: ignore[union-attr]
                assert all(isinstance(c._send, writer) is native for c in session.consumers)
                viewers[native] = v
        assert await wait_until(lambda: all(len(v.video) >= 400 for v in viewers.values()), 20)
        await asyncio.sleep(0)
        fast, slow = viewers[True].video, viewers[False].video
        # align on the first live packet of the later viewer: payloads are unique enough in VP8
        by_payload = {p.payload: p for p in fast}
        pairs = [(by_payload[p.payload], p) for p in slow if p.payload in by_payload]
        assert len(pairs) >= 200, len(pairs)
        seq_d = {(a.sequence_number - b.sequence_number) & 0xFFFF for a, b in pairs}
        ts_d = {(a.timestamp - b.timestamp) & 0xFFFFFFFF for a, b in pairs[-150:]}
        assert len(seq_d) == 1, seq_d
        assert len(ts_d) == 1, ts_d
        assert all(
            (a.marker, a.payload_type, a.payload) == (b.marker, b.payload_type, b.payload)
            for a, b in pairs
        )
        # and nothing one viewer got live is missing at the other within the overlap
        start = pairs[-150][1].sequence_number
        fast_start = (start + seq_d.pop()) & 0xFFFF

        def window(packets: list[RtpPacket], first: int) -> dict[int, bytes]:
            rel = ((p.sequence_number - first) & 0xFFFF for p in packets)
            return {r: p.payload for r, p in zip(rel, packets, strict=True) if r < 100}

        assert window(slow, start) == window(fast, fast_start)
        assert len(window(slow, start)) == 100
    finally:
        for v in viewers.values():
            await v.pc.close()
        await pub.close()
        await asyncio.wait_for(relay.close(), 30)


def _bare_consumer(write: object, ssrc: int) -> Consumer:
    """A Consumer without a peer connection: what forward() and fan_out read, state SYNC."""
    c = Consumer.__new__(Consumer)
    c.state, c.pt, c.ssrc = SYNC, 111, ssrc
    c.seq_next, c.ts_next, c.seq_off, c.ts_off = 0xFFF0, 0xFFFFFF00, 0, 0
    c.packets = c.octets = 0
    c._pending = []
    c._send = write  # type: ignore[assignment]
    return c


async def test_producer_fan_out_matches_forward_byte_for_byte() -> None:
    """The same Producer code on both paths: C writers go through fan_out, Python writers
    through Consumer.forward; every viewer socket gets the same bytes and the counters agree
    (including the SYNC → LIVE step, a consumer with induced loss, and seq/ts wrap)."""
    codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)
    pairs = [(Sockets(), Sockets()) for _ in range(3)]
    try:
        with fastpath.selected(True):
            c_side = [
                _bare_consumer(
                    native_rtp_writer(srtp_session("SSRC_ANY_OUTBOUND"), a.tx, a.addr, None), 7 + i
                )
                for i, (a, _) in enumerate(pairs)
            ]
        py_side = [
            _bare_consumer(
                rtp_writer(srtp_session("SSRC_ANY_OUTBOUND"), b.tx.sendto, b.addr), 7 + i
            )
            for i, (_, b) in enumerate(pairs)
        ]
        writers = [c._send for c in c_side]
        # every transmission of the third pair dropped by a lossy (Python) output on both sides
        c_side[2]._send = py_side[2]._send = lambda *packet: None
        producers = []
        for side in (c_side, py_side):
            producer = Producer("fp", "audio", codec, None)
            for c in side:
                c.producer = producer
                producer.sinks.append(c)
            producers.append(producer)
        for i in range(60):
            packet = RtpPacket(
                payload_type=111,
                marker=i % 2,
                sequence_number=(0xFFE0 + i) & 0xFFFF,
                timestamp=(0xFFFFF000 + 960 * i) & 0xFFFFFFFF,
                ssrc=5,
                payload=bytes((i + k) & 0xFF for k in range(20 + i * 13)),
            )
            for producer in producers:
                producer._on_rtp(packet)
        for fast, slow in zip(c_side, py_side, strict=True):
            assert fast.state == slow.state == LIVE
            assert (fast.packets, fast.octets, fast.seq_off, fast.ts_off) == (
                slow.packets,
                slow.octets,
                slow.seq_off,
                slow.ts_off,
            )
        for a, b in pairs[:2]:
            assert a.drain(60) == b.drain(60)
        # live C-writer consumers were the extension's; the lossy one and Python writers were not
        assert fastpath.fan_out()(c_side, packet, LIVE) == [c_side[2]]
        assert fastpath.fan_out()(py_side, packet, LIVE) == py_side
        for producer in producers:
            producer.close()
        for writer in writers:
            writer.close()  # type: ignore[union-attr]
    finally:
        for a, b in pairs:
            a.close()
            b.close()

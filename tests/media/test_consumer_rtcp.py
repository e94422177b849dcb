"""A viewer's RTCP off aiortc's coroutines (media/consumer_rtcp.py): parsing, reports, a session.

The C parser (media._fastpath.parse_rtcp) and the Python one must agree on every datagram,
valid or not; both must read what aiortc itself writes; the sender reports must be the
bytes aiortc would send; and in a real session the viewer's receiver reports, NACKs and
PLIs must reach the consumer through the intake, not through aiortc's receive task.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpSender
from aiortc.rtp import (
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    pack_remb_fci,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from media import aiortc_internals, consumer_rtcp, fastpath
from media.aiortc_internals import (
    consent_task,
    ice_connection,
    nominated_protocol,
    request_keyframe,
    tap_receiver,
)
from media.consumer import Consumer
from media.consumer_rtcp import NACK, PLI, REMB, RR, parse_rtcp, sender_report
from media.light_viewer import LightViewer
from media.publish import PublishOptions
from media.relay import Relay, RelayConfig

from .peers import SMALL, TestPublisher, wait_until


def _native_parse():  # type: ignore[no-untyped-def]
    native = fastpath._native
    assert native is not None, fastpath.describe()
    return native.parse_rtcp


def _block(ssrc: int, fraction: int = 0, lsr: int = 0, dlsr: int = 0) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(
        ssrc=ssrc,
        fraction_lost=fraction,
        packets_lost=3,
        highest_sequence=70000,
        jitter=12,
        lsr=lsr,
        dlsr=dlsr,
    )


def test_both_parsers_read_what_aiortc_writes() -> None:
    sr_info = RtcpSenderInfo(ntp_timestamp=1 << 40, rtp_timestamp=9, packet_count=1, octet_count=2)
    compound = b"".join(
        bytes(p)
        for p in (
            RtcpRrPacket(ssrc=1, reports=[_block(5, 12, 77, 88), _block(6, 255, 1, 2)]),
            RtcpSrPacket(ssrc=2, sender_info=sr_info, reports=[_block(5, 1, 2, 3)]),
            RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=1, items=[(1, b"viewer-cname")])]),
            RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=5, lost=[10, 12, 26, 27, 400]),
            RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=5),
            RtcpPsfbPacket(fmt=4, ssrc=1, media_ssrc=6),
            RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=pack_remb_fci(2_345_678, [5, 6])),
            RtcpByePacket(sources=[1]),
        )
    )
    expected = [
        (RR, 5, 12, 77, 88),
        (RR, 6, 255, 1, 2),
        (RR, 5, 1, 2, 3),
        (NACK, 5, [10, 12, 26, 27, 400]),
        (PLI, 5),
        (PLI, 6),
        (REMB, 2_345_678 >> 4 << 4, [5, 6]),  # an 18-bit mantissa keeps the top bits
        # (SDES and BYE: nothing a sender acts on)
    ]
    assert parse_rtcp(compound) == _native_parse()(compound) == expected
    # sequence numbers wrap (RFC 4585's PID + BLP can pass 65535; aiortc's parser does not wrap)
    wrap = b"\x81\xcd\x00\x03" + (1).to_bytes(4) + (5).to_bytes(4) + b"\xff\xfe\x00\x07"
    assert parse_rtcp(wrap) == _native_parse()(wrap) == [(NACK, 5, [65534, 65535, 0, 1])]


def test_malformed_datagrams_are_dropped_whole() -> None:
    rr = bytes(RtcpRrPacket(ssrc=1, reports=[_block(5)]))
    for bad in (
        rr + b"\x80",  # a trailing partial header
        rr[:-4],  # truncated
        b"\x40" + rr[1:],  # version 1
        rr[:2] + b"\x00\x00" + rr[4:],  # a report count its length does not hold
        b"\xa1" + rr[1:-1] + b"\x00",  # padding byte of zero
        b"\x81\xcd\x00\x02" + bytes(8) + b"\x00",  # a NACK of 9 bytes (not a multiple of 4)
    ):
        assert parse_rtcp(bad) == _native_parse()(bad) == [], bad.hex()
    # a short REMB is ignored, not fatal to the rest of the datagram
    remb = RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=pack_remb_fci(1000, [5, 6]))
    short = bytes(remb)[:-8] + b"\x00" * 4
    short = short[:2] + ((len(short) // 4) - 1).to_bytes(2) + short[4:]
    assert parse_rtcp(short + rr) == _native_parse()(short + rr) == [(RR, 5, 0, 0, 0)]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 255),
            st.sampled_from([200, 201, 202, 203, 205, 206, 207]),
            st.binary(max_size=80),
        ),
        max_size=4,
    ),
    st.binary(max_size=6),
)
def test_parsers_agree_on_any_input(packets: list[tuple[int, int, bytes]], tail: bytes) -> None:
    """Header-shaped random packets (often nearly valid) and random trailing bytes."""
    data = b"".join(
        bytes((first, kind)) + (len(body) // 4).to_bytes(2) + body for first, kind, body in packets
    )
    for candidate in (data, data + tail, tail):
        assert parse_rtcp(candidate) == _native_parse()(candidate)


def test_sender_report_is_what_aiortc_packs() -> None:
    info = RtcpSenderInfo(
        ntp_timestamp=0xFEDCBA9876543210, rtp_timestamp=7, packet_count=8, octet_count=9
    )
    for cname in (b"", b"a", b"ab", b"abc", b"abcd", b"{a1b2c3d4-e5f6}"):
        ref = bytes(RtcpSrPacket(ssrc=42, sender_info=info))
        if cname:
            ref += bytes(RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=42, items=[(1, cname)])]))
        assert sender_report(42, 0xFEDCBA9876543210, 7, 8, 9, cname) == ref


async def bound_viewer(relay: Relay, show_id: str, viewer: LightViewer) -> Any:
    """``viewer`` joins ``show_id``; returns its session once its consumers are bound to the
    connection (their RTCP through the intake)."""
    session = await relay.view(show_id, await viewer.offer(), "v")
    await viewer.answer(session.answer)  # type: ignore[attr-defined]
    assert await wait_until(lambda: all(c._intake is not None for c in session.consumers), 30)
    return session


async def test_viewer_feedback_goes_through_the_intake(forward_path: str) -> None:
    """Receiver reports (RTT from our sender reports) and PLI from a real aiortc viewer arrive
    through the intake, one per connection, removed again when the viewer leaves."""
    relay = Relay(RelayConfig(connect_timeout_s=10.0))
    pub = TestPublisher(PublishOptions(codec="vp8", keyint_s=30.0, **SMALL))
    viewer = LightViewer()
    try:
        await pub.publish(relay, "rtcp")
        session = await bound_viewer(relay, "rtcp", viewer)
        intake = session.consumers[0]._intake
        assert all(c._intake is intake for c in session.consumers)  # one per connection
        assert set(intake.routes) == {c.ssrc for c in session.consumers}
        dtls = session.consumers[0].sender.transport
        # the viewer answers our sender reports: RTT needs the LSR/DLSR round trip
        assert await wait_until(
            lambda: (
                all(c.rtt is not None for c in session.consumers)
                and all(viewer.counters[k].sender_reports >= 2 for k in ("video", "audio"))
            ),
            30,
        ), [(c.kind, c.rtt) for c in session.consumers]
        assert all(0 <= c.rtt < 1.0 for c in session.consumers)  # type: ignore[operator]
        video = next(c for c in session.consumers if c.kind == "video")
        receiver = next(t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video")
        await request_keyframe(receiver, video.ssrc)
        assert await wait_until(lambda: video.plis == 1, 30)
        assert intake.datagrams >= 3 and intake.dropped == 0
        # leaving releases the intake and aioice's own callback is back
        protocol, _ = nominated_protocol(dtls)
        await session.end()
        assert await wait_until(lambda: dtls not in consumer_rtcp._intakes, 30)
        assert "datagram_received" not in protocol.__dict__  # aioice's own callback is back
    finally:
        await viewer.pc.close()
        await pub.close()
        await asyncio.wait_for(relay.close(), 30)


async def test_sender_reports_and_metrics_come_from_one_clock(forward_path: str) -> None:
    """Three viewers, one timer: every consumer's reports still come every 0.5–1.5 s and the
    packets-sent counter adds up to what the consumers counted."""
    from media import metrics

    relay = Relay(RelayConfig(connect_timeout_s=10.0))
    pub = TestPublisher(PublishOptions(codec="vp8", keyint_s=1.0, **SMALL))
    viewers = [LightViewer() for _ in range(3)]
    try:
        show = f"clock-{forward_path}"  # metrics are process-wide: one show per run
        await pub.publish(relay, show)
        sessions = []
        for i, v in enumerate(viewers):
            session = await relay.view(show, await v.offer(), f"v{i}")
            await v.answer(session.answer)  # type: ignore[attr-defined]
            sessions.append(session)
        consumers = [c for s in sessions for c in s.consumers]
        assert await wait_until(lambda: all(c._intake is not None for c in consumers), 30)
        clock = consumer_rtcp.clock()
        assert set(consumers) <= set(clock.due)
        # the first one waits for the publisher's own report (ours are translated from it)
        assert await wait_until(
            lambda: all(v.counters["video"].sender_reports for v in viewers), 30
        )
        ticks = clock.ticks
        before = [v.counters["video"].sender_reports for v in viewers]
        await asyncio.sleep(3.2)
        after = [v.counters["video"].sender_reports for v in viewers]
        assert all(1 <= b - a <= 7 for a, b in zip(before, after, strict=True)), (before, after)
        assert 10 <= clock.ticks - ticks <= 40  # ≈ 10 ticks a second (fewer on a busy machine)
        for s in sessions:
            await s.end()
        assert await wait_until(lambda: not (set(consumers) & set(clock.due)), 30)
        sent = sum(
            metrics.PACKETS_SENT.labels(show, kind)._value.get() for kind in ("video", "audio")
        )
        assert sent == sum(c.packets for c in consumers) > 0
    finally:
        for v in viewers:
            await v.pc.close()
        await pub.close()
        await asyncio.wait_for(relay.close(), 30)


def test_a_finished_loops_clock_and_what_it_held_are_freed() -> None:
    """One clock per loop (tests run many): what a test left on its clock, here a consent
    check holding its connection's loop as a real one does, must not outlive the test."""

    class Left:
        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            self.loop = loop

        def check(self) -> bool:
            return True  # a closed connection's check: never expires, never leaves

    async def leave_behind() -> Left:
        left = Left(asyncio.get_running_loop())
        consumer_rtcp.clock().add_consent(left)
        return left

    loop = asyncio.new_event_loop()
    gone = weakref.ref(loop.run_until_complete(leave_behind())), weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert gone[0]() is not None  # the closed loop's clock still holds it…

    async def start_a_clock() -> None:
        consumer_rtcp.clock()

    asyncio.run(start_a_clock())  # …until a new loop starts its clock
    gc.collect()
    assert [ref() for ref in gone] == [None, None]


async def test_a_closed_consumer_leaves_the_clock_before_its_rtcp_task_ends() -> None:
    dtls = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    consumer = Consumer("s", "v", "video", RTCRtpSender("video", dtls))
    rtcp_task = asyncio.ensure_future(consumer._rtcp_loop())  # what aiortc runs as its RTCP task
    try:
        assert await wait_until(lambda: consumer in consumer_rtcp.clock().due, 5)
        consumer.close()
        assert consumer not in consumer_rtcp.clock().due and not rtcp_task.done()
    finally:
        rtcp_task.cancel()


async def test_a_consumer_closed_before_it_binds_stays_unbound(forward_path: str) -> None:
    """A session ended while on_connected waited to bind its consumers: a closed consumer
    refuses to bind later (it would sit in the connection's intake, its consent on the clock,
    and keep the whole connection alive for ever)."""
    relay = Relay(RelayConfig(connect_timeout_s=10.0))
    pub = TestPublisher(PublishOptions(codec="vp8", keyint_s=1.0, audio=False, **SMALL))
    viewer = LightViewer()
    try:
        await pub.publish(relay, "late-bind")
        session = await bound_viewer(relay, "late-bind", viewer)
        consumer = session.consumers[0]
        dtls = consumer.sender.transport
        consent = consumer._intake.consent
        consumer.close()
        assert consumer.connect() is False  # the transports are up: it could have bound
        assert consumer._send is None and consumer._intake is None
        await session.end()
        assert dtls not in consumer_rtcp._intakes
        assert consumer not in consumer_rtcp.clock().due
        # and a consent check on a connection that has closed asks no more: it leaves the clock
        assert consent is not None and consent.check() is False
    finally:
        await viewer.pc.close()
        await pub.close()
        await asyncio.wait_for(relay.close(), 30)


async def test_consent_runs_on_the_clock_and_expires(
    forward_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ICE consent (RFC 7675) per connection from the clock instead of aioice's task: a viewer
    that answers keeps its session; one that stops answering loses it after the failures."""
    # Short, but not shorter than a loaded machine's loop lag: the answering viewer is on
    # this same loop, and an answer later than the next check counts as a failure.
    monkeypatch.setattr(aiortc_internals, "CONSENT_INTERVAL_S", 1.0)
    monkeypatch.setattr(aiortc_internals, "CONSENT_FAILURES", 3)
    relay = Relay(RelayConfig(connect_timeout_s=10.0))
    pub = TestPublisher(PublishOptions(codec="vp8", keyint_s=1.0, audio=False, **SMALL))
    viewers = [LightViewer(), LightViewer()]
    try:
        await pub.publish(relay, "consent")
        sessions = []
        for i, v in enumerate(viewers):
            session = await relay.view("consent", await v.offer(), f"v{i}")
            await v.answer(session.answer)  # type: ignore[attr-defined]
            sessions.append(session)
        assert await wait_until(
            lambda: all(c._intake is not None for s in sessions for c in s.consumers), 20
        )
        checks = [s.consumers[0]._intake.consent for s in sessions]
        assert all(c is not None for c in checks)
        for s in sessions:
            dtls = s.consumers[0].sender.transport
            assert consent_task(dtls) is None  # aioice's task is gone
        assert await wait_until(lambda: all(c.answered >= 2 for c in checks), 30)
        assert all(c.failures == 0 for c in checks)
        # the second viewer goes silent to STUN (its browser tab froze, say)
        silent = next(t.receiver.transport for t in viewers[1].pc.getTransceivers())
        ice_connection(silent).request_received = lambda *args: None  # type: ignore[method-assign]
        assert await wait_until(lambda: sessions[1].id not in relay.sessions, 30)
        assert checks[1].expired and not checks[0].expired
        assert sessions[0].id in relay.sessions and checks[0].failures == 0
        assert await wait_until(lambda: checks[1] not in consumer_rtcp.clock().consents, 30)
    finally:
        for v in viewers:
            await v.pc.close()
        await pub.close()
        await asyncio.wait_for(relay.close(), 30)


async def test_a_viewer_that_drops_packets_gets_them_again(forward_path: str) -> None:
    """Every 15th video packet is lost on its way to the viewer (first transmission only):
    the viewer's NACKs reach the consumer through the intake and the retransmissions (RTX)
    fill every hole the viewer saw."""
    relay = Relay(RelayConfig(connect_timeout_s=10.0))
    pub = TestPublisher(PublishOptions(codec="vp8", keyint_s=30.0, audio=False, **SMALL))
    viewer = LightViewer()
    dropped: set[int] = set()
    seen: set[int] = set()
    try:
        await pub.publish(relay, "drops")
        session = await relay.view("drops", await viewer.offer(), "v")
        video_rx = next(t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video")
        counted = viewer._rtp_handler("video")

        def on_rtp(packet, codec) -> None:  # type: ignore[no-untyped-def]
            counted(packet, codec)
            seen.add(packet.sequence_number)  # RTX already unwrapped to the original number

        tap_receiver(video_rx, on_rtp, viewer._rtcp_handler("video"))
        await viewer.answer(session.answer)  # type: ignore[attr-defined]
        assert await wait_until(lambda: all(c._intake is not None for c in session.consumers), 30)
        video = next(c for c in session.consumers if c.kind == "video")
        send = video._send
        assert send is not None

        def lossy(payload: bytes, marker: int, pt: int, seq: int, ts: int, ssrc: int) -> None:
            if pt == video.pt and seq % 15 == 0 and seq not in dropped and len(dropped) < 20:
                dropped.add(seq)
                return
            send(payload, marker, pt, seq, ts, ssrc)

        video._send = lossy  # not a C writer: this consumer goes through Consumer.forward
        assert await wait_until(lambda: len(dropped) >= 10, 30), len(dropped)
        holes = set(dropped)
        assert await wait_until(lambda: holes <= seen, 30), sorted(holes - seen)
        assert video.nacks >= len(holes) and video.retransmits >= len(holes)
        assert video.rtx_pt is not None  # repaired as RTX (RFC 4588)
        assert video._intake.datagrams > 0
    finally:
        await viewer.pc.close()
        await pub.close()
        await asyncio.wait_for(relay.close(), 30)

"""A viewer's RTCP off aiortc's coroutine-per-packet path: feedback in, sender reports out.

aiortc hands every incoming SRTCP datagram through a queue to the DTLS transport's task and
five awaited coroutines (ICE recv → DTLS → unprotect → parse into dataclasses → route →
sender) before a consumer sees it, and runs one sleeping task per sender for its reports.
Per viewer that is a few task wake-ups a second whatever the viewer watches. Here instead:

* :class:`RtcpIntake` — one per viewer connection: the ICE socket's datagram callback hands
  SRTCP straight to it (``aiortc_internals.intercept_srtcp``); it unprotects, parses the
  compound packet into plain events (``media._fastpath.parse_rtcp`` when built, else
  :func:`parse_rtcp`, the same events) and calls the consumer owning each SSRC, in the
  callback: receiver reports (RFC 3550 §6.4.2), generic NACK (RFC 4585 §6.2.1), PLI/FIR
  (§6.3.1, RFC 5104 §4.3.1) and REMB (draft-alvestrand-rmcat-remb-03).
* :class:`RtcpClock` — one per event loop: every :data:`TICK_S` it sends the sender reports
  that are due (each consumer still every 0.5–1.5 s, RFC 3550 §6.2), publishes the metric
  deltas of the whole tick at once, and sends the ICE consent checks that are due (RFC 7675,
  ``aiortc_internals.ConsentCheck``), instead of one task per consumer and per connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from . import fastpath

log = logging.getLogger("liveshop.media.rtcp")

RR, NACK, PLI, REMB = 0, 1, 2, 3  # event kinds, as media/_fastpath.c's parse_rtcp
TICK_S = 0.1

_HEADER = struct.Struct("!BBH")
_U32 = struct.Struct("!L")
_BLOCK = struct.Struct("!LB3xLLLL")  # one report block (RFC 3550 §6.4.1)
_PSFB = struct.Struct("!LL")
_REMB = struct.Struct("!4sBBH")
_SR = struct.Struct("!BBHLQLLL")


def parse_rtcp(data: bytes) -> list[tuple[Any, ...]]:
    """What a sender acts on in a compound RTCP datagram, as ``(kind, ...)`` tuples.

    ``(RR, ssrc, fraction_lost, lsr, dlsr)`` per report block of an SR or RR,
    ``(NACK, media_ssrc, [seq, ...])``, ``(PLI, media_ssrc)`` (PLI or FIR),
    ``(REMB, bitrate, [ssrc, ...])``. A malformed packet anywhere drops the whole datagram
    (``[]``), as aiortc does; SDES, BYE and unknown types are skipped. The pure-Python twin
    of ``media._fastpath.parse_rtcp`` (tests/media/test_consumer_rtcp.py compares them).
    """
    out: list[tuple[Any, ...]] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 4:
            return []
        first, kind, words = _HEADER.unpack_from(data, pos)
        n = words * 4
        if first >> 6 != 2 or end - pos - 4 < n:
            return []
        start = pos + 4
        pos = start + n
        if first & 0x20:
            pad = data[start + n - 1] if n else 0
            if not pad or pad > n:
                return []
            n -= pad
        count = first & 0x1F
        if kind == 200 or kind == 201:  # SR / RR
            skip = 24 if kind == 200 else 4
            if n < skip or n - skip < 24 * count:
                return []
            for i in range(count):
                ssrc, fraction, _, _, lsr, dlsr = _BLOCK.unpack_from(data, start + skip + 24 * i)
                out.append((RR, ssrc, fraction, lsr, dlsr))
        elif kind == 205:  # RTPFB
            if n < 8 or n % 4:
                return []
            if count == 1:
                lost = []
                for at in range(start + 8, start + n, 4):
                    pid, blp = struct.unpack_from("!HH", data, at)
                    lost.append(pid)
                    lost += [(pid + d + 1) & 0xFFFF for d in range(16) if blp >> d & 1]
                out.append((NACK, _U32.unpack_from(data, start + 4)[0], lost))
        elif kind == 206:  # PSFB
            if n < 8:
                return []
            if count == 1 or count == 4:
                out.append((PLI, _U32.unpack_from(data, start + 4)[0]))
            elif count == 15 and n >= 16:
                magic, num, high, low = _REMB.unpack_from(data, start + 8)
                if magic == b"REMB" and n >= 16 + 4 * num:
                    bitrate = (((high & 0x03) << 16) | low) << ((high & 0xFC) >> 2)
                    ssrcs = list(struct.unpack_from(f"!{num}L", data, start + 16))
                    out.append((REMB, bitrate, ssrcs))
    return out


def parser() -> Callable[[bytes], list[tuple[Any, ...]]]:
    """The extension's parser when it is built and selected, else :func:`parse_rtcp`."""
    native = fastpath.native()
    return native.parse_rtcp if native is not None else parse_rtcp  # type: ignore[no-any-return]


def sender_report(
    ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int, cname: bytes | None
) -> bytes:
    """SR (RFC 3550 §6.4.1, no report blocks) + SDES CNAME (§6.5.1), as aiortc packs them."""
    out = _SR.pack(0x80, 200, 6, ssrc, ntp, rtp_ts, packets, octets)
    if cname:
        chunk = _U32.pack(ssrc) + bytes((1, len(cname))) + cname + b"\x00\x00"  # null item
        chunk += b"\x00" * (-len(chunk) % 4)  # padded to 32 bits, as aiortc packs it
        out += _HEADER.pack(0x81, 202, len(chunk) // 4) + chunk
    return out


class FeedbackSink(Protocol):
    """What an intake calls on the consumer owning an SSRC (media.consumer.Consumer)."""

    ssrc: int

    def on_receiver_report(self, fraction_lost: int, lsr: int, dlsr: int) -> None: ...
    def on_nack(self, lost: list[int]) -> None: ...
    def on_pli(self) -> None: ...
    def on_remb(self, bitrate: int) -> None: ...


class RtcpIntake:
    """One viewer connection's incoming SRTCP, handled in the socket's datagram callback."""

    def __init__(self, unprotect: Callable[[bytes], bytes]) -> None:
        self.unprotect = unprotect
        self.parse = parser()
        self.routes: dict[int, FeedbackSink] = {}
        self.datagrams = 0
        self.dropped = 0
        self.uninstall: Callable[[], None] | None = None
        self.consent: Any = None  # the connection's ConsentCheck, on the loop's RtcpClock

    def add(self, sink: FeedbackSink) -> None:
        self.routes[sink.ssrc] = sink

    def remove(self, sink: FeedbackSink) -> bool:
        """Forget ``sink``; True when no sink is left (the caller uninstalls the intake)."""
        if self.routes.get(sink.ssrc) is sink:
            del self.routes[sink.ssrc]
        return not self.routes

    def __call__(self, data: bytes) -> None:
        self.datagrams += 1
        try:
            plain = self.unprotect(data)
        except Exception:  # a bad tag or a replay: dropped, as aiortc does
            self.dropped += 1
            return
        routes = self.routes
        for event in self.parse(plain):
            try:
                kind = event[0]
                if kind == REMB:
                    for ssrc in event[2]:
                        sink = routes.get(ssrc)
                        if sink is not None:
                            sink.on_remb(event[1])
                    continue
                sink = routes.get(event[1])
                if sink is None:
                    continue
                if kind == RR:
                    sink.on_receiver_report(event[2], event[3], event[4])
                elif kind == NACK:
                    sink.on_nack(event[2])
                else:
                    sink.on_pli()
            except Exception:  # one bad event must not cost the viewer its other feedback
                log.exception("RTCP event %r failed", event[0])


_intakes: weakref.WeakKeyDictionary[Any, RtcpIntake] = weakref.WeakKeyDictionary()


def intake_for(dtls: Any, install: Callable[[Any, RtcpIntake], bool]) -> RtcpIntake | None:
    """The intake of a DTLS transport (shared by its consumers: BUNDLE), installed on first use
    by ``install(dtls, intake)``; None when it cannot be (aiortc's own path then serves)."""
    intake = _intakes.get(dtls)
    if intake is None:
        from .aiortc_internals import srtcp_unprotect, take_over_consent

        unprotect = srtcp_unprotect(dtls)
        if unprotect is None:
            return None
        intake = RtcpIntake(unprotect)
        if not install(dtls, intake):
            return None
        _intakes[dtls] = intake
        intake.consent = take_over_consent(dtls)
        if intake.consent is not None:
            clock().add_consent(intake.consent)
    return intake


def release_intake(dtls: Any, sink: FeedbackSink) -> None:
    intake = _intakes.get(dtls)
    if intake is not None and intake.remove(sink):
        del _intakes[dtls]
        if intake.uninstall is not None:
            intake.uninstall()
            intake.uninstall = None
        if intake.consent is not None:
            clock().discard_consent(intake.consent)
            intake.consent.close()


class Reporter(Protocol):
    """What the clock drives (media.consumer.Consumer)."""

    def send_sender_report(self) -> None: ...
    def report(self, batch: dict[Any, float] | None = None) -> None: ...


class Consent(Protocol):
    """An ICE consent check the clock drives (aiortc_internals.ConsentCheck)."""

    def check(self) -> bool: ...


def consent_interval() -> float:
    """RFC 7675 §5.1: every 5 s (aioice's interval), randomised by ±20 %."""
    from .aiortc_internals import CONSENT_INTERVAL_S

    return CONSENT_INTERVAL_S * (0.8 + 0.4 * random.random())


class RtcpClock:
    """Every consumer's sender reports and metrics, and every connection's ICE consent
    checks, from one timer per event loop.

    Each consumer keeps its own randomised 0.5–1.5 s interval (due times) and each
    connection its ≈ 5 s consent interval; the timer only wakes every :data:`TICK_S` while
    there is anything to do, and the counters of every consumer reporting in a tick go to
    Prometheus as one increment per series.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[Reporter, float] = {}
        self.consents: dict[Consent, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.ticks = 0

    def _wake(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(TICK_S, self._tick)

    def _idle(self) -> None:
        if not self.due and not self.consents and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def add(self, reporter: Reporter) -> None:
        self.due[reporter] = time.monotonic() + 0.5 + random.random()
        self._wake()

    def discard(self, reporter: Reporter) -> None:
        self.due.pop(reporter, None)
        self._idle()

    def add_consent(self, consent: Consent) -> None:
        self.consents[consent] = time.monotonic() + consent_interval()
        self._wake()

    def discard_consent(self, consent: Consent) -> None:
        self.consents.pop(consent, None)
        self._idle()

    def _tick(self) -> None:
        self.ticks += 1
        now = time.monotonic()
        batch: dict[Any, float] = {}
        due = self.due
        for reporter, at in list(due.items()):
            if at > now:
                continue
            due[reporter] = now + 0.5 + random.random()
            try:
                reporter.report(batch)
                reporter.send_sender_report()
            except Exception:
                log.exception("sender report failed")
        for series, amount in batch.items():
            series.inc(amount)
        consents = self.consents
        for consent, at in list(consents.items()):
            if at > now:
                continue
            consents[consent] = now + consent_interval()
            try:
                if not consent.check():  # expired: the connection is closing
                    del consents[consent]
            except Exception:
                log.exception("consent check failed")
        more = due or consents
        self._timer = self.loop.call_later(TICK_S, self._tick) if more else None


_clocks: dict[asyncio.AbstractEventLoop, RtcpClock] = {}


def clock() -> RtcpClock:
    """The running loop's clock (tests run many loops; a worker process has one)."""
    loop = asyncio.get_running_loop()
    found = _clocks.get(loop)
    if found is None:
        # A clock holds its loop (its timer does), so a weak key would never die: a new loop's
        # clock drops those of the loops that have closed, with whatever was left on them.
        for old in [old for old in _clocks if old.is_closed()]:
            del _clocks[old]
        found = _clocks[loop] = RtcpClock(loop)
    return found

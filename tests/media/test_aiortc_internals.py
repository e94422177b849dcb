"""Fails loudly when an aiortc/aioice upgrade moves the internals media/ relies on."""

from __future__ import annotations

import gc
import re
import struct
from pathlib import Path

import aiortc
import pytest
from pylibsrtp import Session

from media.aiortc_internals import AIORTC_VERSION, check_internals, rtp_writer

from .peers import srtp_session


def test_internals_present() -> None:
    assert check_internals() == []


def test_aiortc_pinned_exactly() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert (
        re.search(r'"aiortc==([\d.]+)"', pyproject).group(1) == AIORTC_VERSION == aiortc.__version__
    )


# Private names of aiortc, aioice and pylibsrtp: name-mangled attributes, the underscored
# methods and fields media/aiortc_internals.py uses, and their private modules.
PRIVATE = re.compile(
    r"_RTCRtp\w+__|_RTCDtls\w+__|\._tx_srtp|\._rx_srtp|\._nominated|\._handle_rtp|\._handle_rtcp"
    r"|\._send_rtcp|\._run_rtcp|\._send_rtp|\._set_role|\._create_ssl_context|\._protocols\b"
    r"|\._srtp\b|pylibsrtp\._binding|from aiortc\.\w+ import _|aioice\.\w+\._"
    r"|rtcrtpreceiver import StreamStatistics"
)
TREE = ("server", "media", "loadtest", "benchmarks", "tests")


def test_only_one_module_touches_internals() -> None:
    root = Path(__file__).parents[2]
    allowed = {root / "media" / "aiortc_internals.py", Path(__file__).resolve()}
    checked = [p for top in TREE for p in (root / top).rglob("*.py") if p.resolve() not in allowed]
    assert len(checked) > 100  # the whole tree, not an empty glob
    offenders = [str(p.relative_to(root)) for p in checked if PRIVATE.search(p.read_text())]
    assert offenders == []


def test_the_internals_check_sees_what_it_looks_for() -> None:
    """The pattern above finds the private names aiortc_internals really uses."""
    source = (Path(__file__).parents[2] / "media" / "aiortc_internals.py").read_text()
    for needle in ("_RTCRtpReceiver__codecs", "._tx_srtp", "._handle_rtp_packet", "._srtp"):
        assert needle in source and PRIVATE.search(needle), needle


def _srtp_pair() -> tuple[Session, Session, Session]:
    """Two identical outbound sessions (fresh replay state each) and the matching inbound one."""
    return (
        srtp_session("SSRC_ANY_OUTBOUND"),
        srtp_session("SSRC_ANY_OUTBOUND"),
        srtp_session("SSRC_ANY_INBOUND"),
    )


def test_rtp_writer_sends_what_pylibsrtp_would() -> None:
    ours, reference, inbound = _srtp_pair()
    sent: list[tuple[bytes, object]] = []
    addr = ("127.0.0.1", 9)
    write = rtp_writer(ours, lambda data, to: sent.append((bytes(data), to)), addr)
    del ours  # the writer alone must keep the libsrtp context alive
    gc.collect()
    packets = [
        (bytes(range(256)) * 5, 1, 96, 0xFFFF, 0xFFFFFFFF, 0x1234),
        (b"\x10\x00\x9d", 0, 111, 0, 0, 0xCAFEBABE),
        (bytes(1100), 1, 97, 7, 90000, 0x1234),
    ]
    for payload, marker, pt, seq, ts, ssrc in packets:
        write(payload, marker, pt, seq, ts, ssrc)
    expected = [
        struct.pack("!BBHII", 0x80, marker << 7 | pt, seq, ts, ssrc) + payload
        for payload, marker, pt, seq, ts, ssrc in packets
    ]
    assert [to for _, to in sent] == [addr] * len(packets)
    assert [data for data, _ in sent] == [reference.protect(plain) for plain in expected]
    assert [inbound.unprotect(data) for data, _ in sent] == expected


def test_rtp_writer_refuses_an_oversized_payload() -> None:
    ours, _, _ = _srtp_pair()
    sent: list[bytes] = []
    write = rtp_writer(ours, lambda data, to: sent.append(data), ("127.0.0.1", 9))
    with pytest.raises(ValueError):
        write(bytes(1600), 0, 96, 1, 1, 1)
    assert sent == []

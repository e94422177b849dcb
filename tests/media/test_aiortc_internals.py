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


def test_only_one_module_touches_internals() -> None:
    media = Path(__file__).parents[2] / "media"
    offenders = [
        p.name
        for p in media.glob("*.py")
        if p.name != "aiortc_internals.py"
        and re.search(r"_RTCRtp\w+__|\._tx_srtp|\._nominated|\._handle_rtp", p.read_text())
    ]
    assert offenders == []


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

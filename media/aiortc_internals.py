"""The one module that reaches into aiortc's (and aioice's, pylibsrtp's) private internals.

aiortc 1.16 has no public encoded-frame API: ``RTCRtpReceiver`` depayloads and hands
frames to a decoder thread, and ``RTCRtpSender`` always (re)packetizes. A relay wants
neither, so this module:

* taps a receiver's RTP path before the jitter buffer (keeping receiver statistics, RTX
  unwrapping and NACK generation, RFC 4585 §6.2.1) and hands raw ``RtpPacket``s on;
* parks a sender (its track never yields) and replaces its RTCP loop, so the relay can
  write already-packetized RTP straight through the SRTP session (RFC 3711) to the
  nominated ICE pair of the viewer;
* takes the DTLS server role when an offer allows it and, as a DTLS client, offers RSA
  suites too (peers such as GStreamer's webrtcbin have RSA certificates);
* makes aioice gather the configured host addresses (it skips 127.0.0.1) in a UDP port
  range and announce a public address (like mediasoup's ``announcedIp``).

aiortc is pinned ``==1.16.0``; ``tests/media/test_aiortc_internals.py`` calls
:func:`check_internals` so an upgrade that moves any of this fails loudly.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import aioice.ice
import aioice.stun
import aioice.turn
import aiortc
import aiortc.sdp
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import (
    RTCDtlsTransport,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdtlstransport import RTCCertificate
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    AnyRtcpPacket,
    RtcpPacket,
    RtpPacket,
    unwrap_rtx,
)
from OpenSSL import SSL
from pylibsrtp import Error as SrtpError
from pylibsrtp import Session
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

from . import fastpath

AIORTC_VERSION = "1.16.0"

_RTP_HEADER = struct.Struct("!BBHII")
_SRTP_TRAILER = 16 + 128  # pylibsrtp's SRTP_MAX_TRAILER_LEN
_RTP_BUFFER = 1500 + _SRTP_TRAILER
# The libsrtp 2.x prototype media/_fastpath.c calls through a pointer (protect_fn there).
_SRTP_PROTECT_C_TYPE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"

OnRtp = Callable[[RtpPacket, RTCRtpCodecParameters], None]
OnRtcp = Callable[[AnyRtcpPacket], None]

__all__ = [
    "AIORTC_VERSION",
    "ParkedTrack",
    "ReceiverState",
    "RtpPacket",
    "RtcpPacket",
    "RtpWrite",
    "ViewerOutput",
    "ConsentCheck",
    "check_internals",
    "close_notify",
    "consent_task",
    "configure_ice",
    "fast_rtp_writer",
    "ice_sockets",
    "ice_connection",
    "intercept_srtcp",
    "nominated_protocol",
    "interoperable_dtls",
    "native_rtp_writer",
    "park_sender",
    "request_keyframe",
    "replace_rtp_handler",
    "rtp_writer",
    "sender_cname",
    "srtcp_protect",
    "srtcp_unprotect",
    "srtp_pointers",
    "stop_decoder",
    "take_over_consent",
    "tap_receiver",
]


def check_internals() -> list[str]:
    """Return what is missing from the aiortc/aioice internals this module relies on."""
    problems: list[str] = []
    if aiortc.__version__ != AIORTC_VERSION:
        problems.append(f"aiortc {aiortc.__version__} != pinned {AIORTC_VERSION}")
    need: list[tuple[Any, str]] = [
        (RTCRtpReceiver, "_handle_rtp_packet"),
        (RTCRtpReceiver, "_handle_rtcp_packet"),
        (RTCRtpReceiver, "_send_rtcp_nack"),
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder"),
        (RTCRtpSender, "_handle_rtcp_packet"),
        (RTCRtpSender, "_run_rtcp"),
        (RTCRtpSender, "_send_rtcp"),
        (RTCDtlsTransport, "_send_rtp"),
        (aioice.ice, "get_host_addresses"),
        (aioice.ice.Connection, "get_component_candidates"),
        (aioice.ice.Connection, "sendto"),
        (aioice.ice, "server_reflexive_candidate"),
        (aioice.ice, "StunProtocol"),
        (aioice.turn, "UDP_SOCKET_BUFFER_SIZE"),
    ]
    for owner, name in need:
        if not hasattr(owner, name):
            problems.append(f"{getattr(owner, '__name__', owner)}.{name} is gone")
    dtls = RTCDtlsTransport.__init__.__code__.co_names
    for name in ("_tx_srtp", "_rx_srtp"):
        if name not in dtls:
            problems.append(f"RTCDtlsTransport no longer sets {name}")
    recv_init = RTCRtpReceiver.__init__.__code__.co_names
    for name in (
        "_RTCRtpReceiver__codecs",
        "_RTCRtpReceiver__remote_streams",
        "_RTCRtpReceiver__rtx_ssrc",
        "_RTCRtpReceiver__nack_generator",
    ):
        if name not in recv_init:
            problems.append(f"RTCRtpReceiver no longer sets {name}")
    send_init = RTCRtpSender.__init__.__code__.co_names
    for name in (
        "_RTCRtpSender__rtcp_started",
        "_RTCRtpSender__rtcp_exited",
        "_RTCRtpSender__rtx_payload_type",
        "_RTCRtpSender__cname",
        "_RTCRtpSender__force_keyframe",
    ):
        if name not in send_init:
            problems.append(f"RTCRtpSender no longer sets {name}")
    if not hasattr(RTCCertificate, "_create_ssl_context"):
        problems.append("RTCCertificate._create_ssl_context is gone")
    if not hasattr(RTCDtlsTransport, "_set_role"):
        problems.append("RTCDtlsTransport._set_role is gone")
    if "_role" not in RTCDtlsTransport.__init__.__code__.co_names:
        problems.append("RTCDtlsTransport no longer sets _role")
    conn_init = aioice.ice.Connection.__init__.__code__.co_names
    for name in ("_protocols", "stun_server"):
        if name not in conn_init:
            problems.append(f"aioice Connection no longer has {name}")
    if "_nominated" not in conn_init:
        problems.append("aioice Connection no longer has _nominated")
    # rtp_writer protects in place with libsrtp through pylibsrtp's own cffi binding.
    if "_srtp" not in Session.__init__.__code__.co_names:
        problems.append("pylibsrtp Session no longer sets _srtp")
    if not hasattr(_srtp_lib, "srtp_protect"):
        problems.append("pylibsrtp binding has no srtp_protect")
    problems += _check_send_path_internals()
    problems += _check_rtcp_internals()
    return problems


def _check_rtcp_internals() -> list[str]:
    """The private names :func:`intercept_srtcp`, :func:`srtcp_unprotect` and
    :func:`take_over_consent` (media/consumer_rtcp.py's intake and clock) rely on."""
    problems: list[str] = []
    if "_rx_srtp" not in RTCDtlsTransport.__init__.__code__.co_names:
        problems.append("RTCDtlsTransport no longer sets _rx_srtp")
    if not hasattr(RTCDtlsTransport, "_handle_rtcp_data"):
        problems.append("RTCDtlsTransport._handle_rtcp_data is gone")
    conn = aioice.ice.Connection
    init = conn.__init__.__code__.co_names
    for name in ("_query_consent_task", "remote_password"):
        if name not in init:
            problems.append(f"aioice Connection no longer sets {name}")
    for name in ("build_request", "query_consent", "close"):
        if not hasattr(conn, name):
            problems.append(f"aioice Connection.{name} is gone")
    for name in ("CONSENT_INTERVAL", "CONSENT_FAILURES"):
        if not hasattr(aioice.ice, name):
            problems.append(f"aioice.ice.{name} is gone")
    stun = getattr(aioice.ice, "StunProtocol", None)
    if stun is not None:
        received = stun.datagram_received.__code__.co_names
        for name in ("transactions", "response_received", "datagram_received"):
            if name not in received and name != "datagram_received":
                problems.append(f"aioice StunProtocol.datagram_received no longer uses {name}")
        if "transactions" not in stun.__init__.__code__.co_names:
            problems.append("aioice StunProtocol no longer sets transactions")
        if not hasattr(stun, "send_stun"):
            problems.append("aioice StunProtocol.send_stun is gone")
    if not hasattr(aioice.stun.Message, "check_message_integrity"):
        problems.append("aioice stun.Message.check_message_integrity is gone")
    return problems


def _check_send_path_internals() -> list[str]:
    """The private names :func:`fast_rtp_writer` and :func:`native_rtp_writer` read.

    The C writer calls pylibsrtp's own ``srtp_protect`` through a raw function pointer, so
    its exact C signature (libsrtp 2.x) is checked here too, not only its presence.
    """
    problems: list[str] = []
    sender_init = RTCRtpSender.__init__.__code__.co_names
    for name in ("_ssrc", "_rtx_ssrc"):
        if name not in sender_init:
            problems.append(f"RTCRtpSender no longer sets {name}")
    if "_connection" not in RTCIceTransport.__init__.__code__.co_names:
        problems.append("RTCIceTransport no longer sets _connection")
    if "_protocols" not in aioice.ice.Connection.__init__.__code__.co_names:
        problems.append("aioice Connection no longer sets _protocols")
    stun = getattr(aioice.ice, "StunProtocol", None)
    if stun is None:
        problems.append("aioice.ice.StunProtocol is gone")
    elif "transport" not in stun.connection_made.__code__.co_names:
        problems.append("aioice StunProtocol.connection_made no longer sets transport")
    if "protocol" not in aioice.ice.CandidatePair.__init__.__code__.co_names:
        problems.append("aioice CandidatePair no longer sets protocol")
    if not isinstance(getattr(aioice.ice.CandidatePair, "remote_addr", None), property):
        problems.append("aioice CandidatePair.remote_addr is gone")
    protect = getattr(_srtp_lib, "srtp_protect", None)
    if protect is not None and _srtp_ffi.typeof(protect).cname != _SRTP_PROTECT_C_TYPE:
        problems.append(
            f"pylibsrtp srtp_protect is {_srtp_ffi.typeof(protect).cname}, "
            f"media/_fastpath.c assumes {_SRTP_PROTECT_C_TYPE}"
        )
    return problems


# --------------------------------------------------------------------------- receive side


def tap_receiver(receiver: RTCRtpReceiver, on_rtp: OnRtp, on_rtcp: OnRtcp) -> None:
    """Take RTP from ``receiver`` before its jitter buffer and decoder.

    Keeps what the publisher relies on: receiver statistics for RTCP RR (RFC 3550 §6.4.2),
    RTX unwrapping (RFC 4588) and NACK generation (RFC 4585 §6.2.1). Nothing is decoded.
    """
    original_rtcp = receiver._handle_rtcp_packet

    async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
        codecs: dict[int, RTCRtpCodecParameters] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        stats = streams.get(packet.ssrc)
        if stats is None:
            stats = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if is_rtx(codec):
            original_ssrc = receiver._RTCRtpReceiver__rtx_ssrc.get(packet.ssrc)  # type: ignore[attr-defined]
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = codecs[apt]
        nack = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
        if nack is not None and nack.add(packet):
            await receiver._send_rtcp_nack(packet.ssrc, sorted(nack.missing))
        if packet.payload:
            on_rtp(packet, codec)

    async def handle_rtcp(packet: AnyRtcpPacket) -> None:
        await original_rtcp(packet)
        on_rtcp(packet)

    receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]
    receiver._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


RtpHandler = Callable[[RtpPacket, int], Awaitable[None]]


class ReceiverState(NamedTuple):
    """aiortc's per-receiver state that a replacement RTP handler keeps up to date, so
    receiver reports (RFC 3550 §6.4.2) and NACKs (RFC 4585 §6.2.1) still flow."""

    codecs: dict[int, RTCRtpCodecParameters]  # by payload type
    streams: dict[int, StreamStatistics]  # by SSRC: what RTCP RR is built from
    nack: Any  # aiortc's NackGenerator, or None when NACK was not negotiated
    send_nack: Callable[[int, list[int]], Awaitable[None]]
    new_stream: Callable[[int], StreamStatistics]  # statistics for a new SSRC at a clock rate


def replace_rtp_handler(
    receiver: RTCRtpReceiver, make: Callable[[ReceiverState, RtpHandler], RtpHandler]
) -> None:
    """Replace ``receiver``'s RTP entry point by ``make(state, aiortc's own handler)``.

    For receivers that must not pay aiortc's depayload and decode (loadtest's light viewers):
    the new handler gets the receiver's statistics and NACK state, and may still hand packets
    on to aiortc's handler (full decode).
    """
    state = ReceiverState(
        codecs=receiver._RTCRtpReceiver__codecs,  # type: ignore[attr-defined]
        streams=receiver._RTCRtpReceiver__remote_streams,  # type: ignore[attr-defined]
        nack=receiver._RTCRtpReceiver__nack_generator,  # type: ignore[attr-defined]
        send_nack=receiver._send_rtcp_nack,
        new_stream=StreamStatistics,
    )
    receiver._handle_rtp_packet = make(state, receiver._handle_rtp_packet)  # type: ignore[method-assign]


def request_keyframe(receiver: RTCRtpReceiver, media_ssrc: int) -> Awaitable[None]:
    """Send a PLI (RFC 4585 §6.3.1) for ``media_ssrc`` to the publisher."""
    return receiver._send_rtcp_pli(media_ssrc)


def keyframe_requested(sender: RTCRtpSender) -> bool:
    """Read and clear the PLI/FIR flag a sender sets (publishers of pre-encoded packets)."""
    flag = bool(sender._RTCRtpSender__force_keyframe)  # type: ignore[attr-defined]
    sender._RTCRtpSender__force_keyframe = False  # type: ignore[attr-defined]
    return flag


# --------------------------------------------------------------------------- send side


class ParkedTrack(MediaStreamTrack):
    """A track whose ``recv`` never returns: the sender's own RTP loop stays idle."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_event_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise asyncio.CancelledError


def park_sender(
    sender: RTCRtpSender,
    on_rtcp: OnRtcp,
    rtcp_loop: Callable[[], Awaitable[None]],
    on_start: Callable[[RTCRtpSendParameters, int, int], None],
) -> None:
    """Route a sender's incoming RTCP to ``on_rtcp`` and replace its SR loop by ``rtcp_loop``.

    ``on_start(parameters, ssrc, rtx_ssrc)`` sees the negotiated send parameters. Must be
    called before the sender is started (before ``setLocalDescription``).
    """
    original_send = sender.send

    async def send(parameters: RTCRtpSendParameters) -> None:
        on_start(parameters, sender._ssrc, sender._rtx_ssrc)
        await original_send(parameters)

    async def handle_rtcp(packet: AnyRtcpPacket) -> None:
        on_rtcp(packet)

    async def run_rtcp() -> None:
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        try:
            await rtcp_loop()
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]

    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    sender._run_rtcp = run_rtcp  # type: ignore[method-assign]
    sender.send = send  # type: ignore[method-assign]


def close_notify(dtls: RTCDtlsTransport) -> tuple[Callable[[], None], Callable[[], None]] | None:
    """Send the DTLS close_notify alert (RFC 5246 §7.2.1) now; return ``(resend, release)``.

    The alert is one datagram, and a peer whose socket buffer is full (a viewer still
    working through video) drops it and then waits ~30 s for ICE consent to expire. Its
    bytes are kept and ``resend`` sends the same record again on a duplicate of the pair's
    socket, which outlives aiortc's close until ``release``; a copy arriving after the first
    is dropped by the peer's DTLS replay check. aiortc's own ``stop`` then finds the alert
    already sent. None when DTLS is not connected or the pair is not a plain UDP one (TURN).
    """
    pair = dtls.transport._connection._nominated.get(1)
    if (
        dtls.state != "connected"
        or pair is None
        or type(pair.protocol) is not aioice.ice.StunProtocol
    ):
        return None
    transport = pair.protocol.transport
    if transport is None:
        return None
    try:
        dtls._ssl.shutdown()
        record = dtls._ssl.bio_read(1500)
    except SSL.Error:
        return None
    sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
    sock.setblocking(False)
    addr = pair.remote_addr

    def resend() -> None:
        try:
            sock.sendto(record, addr)
        except OSError:
            pass

    resend()
    return resend, sock.close


def stop_decoder(receiver: RTCRtpReceiver) -> None:
    """End the receiver's decoder thread (``RTCRtpReceiver.stop`` does, but a close stuck
    before it would leave a non-daemon thread that keeps the process from exiting)."""
    receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]


def sender_cname(sender: RTCRtpSender) -> str | None:
    return sender._RTCRtpSender__cname  # type: ignore[attr-defined,no-any-return]


RtpWrite = Callable[[bytes, int, int, int, int, int], None]
SendTo = Callable[[bytes, Any], Any]


def rtp_writer(
    session: Session, sendto: SendTo, addr: Any, fallback: SendTo | None = None
) -> RtpWrite:
    """``write(payload, marker, pt, seq, ts, ssrc)``: build, SRTP-protect (RFC 3711) and send.

    The 12-byte header (RFC 3550 §5.1, no CSRC, no extension) is packed straight into a
    preallocated buffer after which the payload is copied, libsrtp protects the buffer in
    place, and the protected bytes go to ``sendto``. Compared with ``Session.protect``
    (pylibsrtp's copy-in/copy-out wrapper) this saves a concatenation, a per-call
    ``ffi.new`` and two Python frames per packet. ``seq`` and ``ts`` must already be
    wrapped to 16 and 32 bits; the closure keeps ``session`` (the libsrtp context) alive.
    If ``sendto`` raises ``OSError`` (a full socket buffer) the packet goes to ``fallback``.
    """
    ctx = session._srtp[0]
    cdata = _srtp_ffi.new("char[]", _RTP_BUFFER)
    buf = _srtp_ffi.buffer(cdata)
    length = _srtp_ffi.new("int *")
    srtp_protect = _srtp_lib.srtp_protect
    pack_into = _RTP_HEADER.pack_into
    limit = _RTP_BUFFER - _SRTP_TRAILER - 12

    def write(payload: bytes, marker: int, pt: int, seq: int, ts: int, ssrc: int) -> None:
        n = len(payload)
        if n > limit:
            raise ValueError(f"RTP payload of {n} bytes does not fit")
        pack_into(buf, 0, 0x80, marker << 7 | pt, seq, ts, ssrc)
        buf[12 : 12 + n] = payload
        length[0] = 12 + n
        rc = srtp_protect(ctx, cdata, length)
        if rc:
            raise SrtpError(f"srtp_protect failed ({rc}) in {session!r}")
        data = buf[0 : length[0]]
        try:
            sendto(data, addr)
        except OSError:
            if fallback is None:
                raise
            fallback(data, addr)

    return write


class ViewerOutput(NamedTuple):
    """What :func:`fast_rtp_writer` hands a consumer; ``close()`` when the viewer leaves."""

    rtp: RtpWrite
    rtcp: Callable[[bytes], None]
    close: Callable[[], None]


def fast_rtp_writer(dtls: RTCDtlsTransport) -> ViewerOutput | None:
    """Synchronous RTP and RTCP writers for the nominated ICE pair of ``dtls``.

    Skips aiortc's coroutine-per-packet path (``_send_rtp`` → ``Connection.send``). RTP goes
    out with a plain ``socket.sendto`` on a duplicate of the pair's socket (the event loop's
    ``sendto`` costs ≈ 2 µs more per packet: context copy, address conversion, flow-control
    bookkeeping); when the kernel refuses (full buffer), the loop's transport queues it.
    Returns None until DTLS is connected and ICE has a nominated pair.
    """
    srtp = dtls._tx_srtp
    connection = dtls.transport._connection
    pair = connection._nominated.get(1)
    if srtp is None or pair is None or pair.protocol.transport is None:
        return None
    transport = pair.protocol.transport
    addr = pair.remote_addr
    protect_rtcp = srtp.protect_rtcp
    queued_sendto = transport.sendto
    sock = transport.get_extra_info("socket")

    def write_rtcp(data: bytes) -> None:
        queued_sendto(protect_rtcp(data), addr)

    native = native_rtp_writer(srtp, sock, addr, queued_sendto)
    if native is not None:
        return ViewerOutput(native, write_rtcp, native.close)
    raw = socket.socket(fileno=os.dup(sock.fileno()))
    raw.setblocking(False)
    return ViewerOutput(rtp_writer(srtp, raw.sendto, addr, queued_sendto), write_rtcp, raw.close)


def srtcp_unprotect(dtls: RTCDtlsTransport) -> Callable[[bytes], bytes] | None:
    """The viewer connection's SRTCP unprotect (its receiving pylibsrtp session), or None
    before DTLS is connected."""
    srtp = dtls._rx_srtp
    return None if srtp is None else srtp.unprotect_rtcp


def srtcp_protect(dtls: RTCDtlsTransport) -> Callable[[bytes], bytes]:
    """The connection's SRTCP protect (benchmarks: RTCP as a viewer would send it)."""
    return dtls._tx_srtp.protect_rtcp  # type: ignore[no-any-return]


def ice_connection(dtls: RTCDtlsTransport) -> aioice.ice.Connection:
    """The aioice connection under ``dtls`` (tests: consent, sockets)."""
    return dtls.transport._connection


def nominated_protocol(dtls: RTCDtlsTransport) -> tuple[Any, Any]:
    """``(StunProtocol, remote address)`` of the nominated pair (benchmarks, tests)."""
    pair = dtls.transport._connection._nominated[1]
    return pair.protocol, pair.remote_addr


def intercept_srtcp(dtls: RTCDtlsTransport, handle: Callable[[bytes], None]) -> bool:
    """Hand SRTCP arriving on the nominated ICE pair's socket to ``handle``, synchronously.

    aiortc would queue it (aioice ``Connection.data_received``), wake the DTLS transport's
    task and await it through five coroutines; here the socket's ``datagram_received`` (an
    instance attribute over aioice's ``StunProtocol`` method) calls ``handle`` at once.
    Everything else (STUN, DTLS, RTP) goes on to aioice as before. ``handle.uninstall``
    is set to a function restoring aioice's own callback. False without a nominated pair.
    """
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None or pair.protocol.transport is None:
        return False
    protocol = pair.protocol
    original = protocol.datagram_received

    def datagram_received(data: bytes, addr: Any) -> None:
        # RFC 7983 demux: 128–191 is RTP/RTCP; RTCP's packet types (aiortc's is_rtcp)
        if len(data) > 8 and 127 < data[0] < 192 and 191 < data[1] < 209:
            handle(data)
        else:
            original(data, addr)

    def uninstall() -> None:
        if protocol.__dict__.get("datagram_received") is datagram_received:
            del protocol.datagram_received

    protocol.datagram_received = datagram_received  # type: ignore[method-assign]
    handle.uninstall = uninstall  # type: ignore[attr-defined]
    return True


# RFC 7675 consent freshness: aioice's interval and failure count, module-level for tests.
CONSENT_INTERVAL_S = float(aioice.ice.CONSENT_INTERVAL)
CONSENT_FAILURES = int(aioice.ice.CONSENT_FAILURES)


class ConsentCheck:
    """ICE consent (RFC 7675 §5.1) of one connection, driven by a shared clock, not a task.

    aioice runs ``Connection.query_consent`` per connection: a task that wakes every ≈ 5 s
    and awaits a STUN transaction (a future, a retransmission timer). Here the clock calls
    :meth:`check` when it is due: it sends the same binding request (aioice's own
    ``build_request``, MESSAGE-INTEGRITY with the remote password) and registers itself in
    the socket's transaction table, where aioice's ``StunProtocol`` hands it the response.
    A request still unanswered at the next check counts as a failure, as aioice's timeout
    does; after ``CONSENT_FAILURES`` of them in a row the connection is closed (consent
    expired: the viewer's session ends, as with aioice's own check).
    """

    def __init__(self, connection: aioice.ice.Connection, key: bytes) -> None:
        self.connection = connection
        self.key = key
        self.failures = 0
        self.answered = 0
        self.expired = False
        self._pending: tuple[Any, bytes] | None = None  # (protocol, transaction id)

    def check(self) -> bool:
        """Send the next request; False once consent has expired (the caller forgets us)."""
        if self.expired:
            return False
        self._forget_pending(failed=True)
        if self.failures >= CONSENT_FAILURES:
            self.expired = True
            asyncio.ensure_future(self.connection.close())
            return False
        pair = self.connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return False  # closed (a check starts once connected): nothing to ask, ever
        request = self.connection.build_request(pair, nominate=False)
        request.add_message_integrity(self.key)
        protocol = pair.protocol
        protocol.transactions[request.transaction_id] = self
        self._pending = (protocol, request.transaction_id)
        protocol.send_stun(request, pair.remote_addr)
        return True

    def response_received(self, message: Any, addr: Any) -> None:
        """aioice's StunProtocol found our transaction id (a response or an error)."""
        if not message.check_message_integrity(self.key):
            return  # not from the peer: the check stays pending
        ok = message.message_class == aioice.stun.Class.RESPONSE
        self._forget_pending(failed=not ok)
        if ok:
            self.failures = 0
            self.answered += 1

    def _forget_pending(self, failed: bool) -> None:
        if self._pending is None:
            return
        protocol, tid = self._pending
        protocol.transactions.pop(tid, None)
        self._pending = None
        if failed:
            self.failures += 1

    def close(self) -> None:
        self._forget_pending(failed=False)


def consent_task(dtls: RTCDtlsTransport) -> asyncio.Task[None] | None:
    """aioice's own consent task of the connection (None once taken over; tests)."""
    return dtls.transport._connection._query_consent_task  # type: ignore[no-any-return]


def take_over_consent(dtls: RTCDtlsTransport) -> ConsentCheck | None:
    """Stop aioice's consent task for ``dtls``'s connection and return a :class:`ConsentCheck`
    for the caller's clock; None when there is no task to take over (not connected yet)."""
    connection = dtls.transport._connection
    task = connection._query_consent_task
    if task is None or task.done() or connection.remote_password is None:
        return None
    task.cancel()
    connection._query_consent_task = None
    return ConsentCheck(connection, connection.remote_password.encode("utf8"))


def srtp_pointers(session: Session) -> tuple[int, int]:
    """``(srtp_t, &srtp_protect)`` of a pylibsrtp session, as integers for media/_fastpath.c.

    The function is pylibsrtp's own (its bundled libsrtp), so the C writer and ``Session``
    share one library instance and one session state.
    """
    ctx = int(_srtp_ffi.cast("uintptr_t", session._srtp[0]))
    protect = int(_srtp_ffi.cast("uintptr_t", _srtp_ffi.addressof(_srtp_lib, "srtp_protect")))
    return ctx, protect


def native_rtp_writer(session: Session, sock: Any, addr: Any, fallback: SendTo | None) -> Any:
    """The C twin of :func:`rtp_writer` (``media._fastpath.Writer``), or None without it.

    Hands the extension the viewer's ``srtp_t`` and the address of pylibsrtp's own
    ``srtp_protect`` as integers, so the C code protects with the same libsrtp instance and
    the same session state (rollover counter, replay window) as the Python path would; the
    writer holds ``session`` so the context outlives it. It sends on its own duplicate of
    ``sock``'s descriptor (closed by ``close()``). None when the extension is not built or
    not selected, or the address is not a plain numeric IPv4/IPv6 one (e.g. a scoped IPv6).
    """
    ext = fastpath.native()
    if ext is None:
        return None
    ctx, protect = srtp_pointers(session)
    fd = os.dup(sock.fileno())
    try:
        return ext.Writer(
            ctx, protect, fd, int(sock.family), addr[0], int(addr[1]), session, fallback
        )
    except ValueError:
        os.close(fd)
        return None


# --------------------------------------------------------------------------- DTLS interop

# aiortc's own list is ECDHE-ECDSA only: fine while it is the DTLS server (its certificate is
# ECDSA), fatal as a client against an RSA-certificate server ("no shared cipher"). The
# ECDHE-RSA suites are the same AEAD/CBC choices with RSA authentication of the server.
DTLS_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)
_original_ssl_context = RTCCertificate._create_ssl_context


def _ssl_context(self: RTCCertificate, srtp_profiles: Any) -> Any:
    ctx = _original_ssl_context(self, srtp_profiles)
    ctx.set_cipher_list(DTLS_CIPHERS)
    return ctx


def interoperable_dtls(pc: RTCPeerConnection) -> None:
    """Make the coming answer's DTLS work with RSA-certificate peers (GStreamer webrtcbin).

    Call after ``setRemoteDescription(offer)``, before ``createAnswer``. Where the offer
    says ``a=setup:actpass`` aiortc would answer ``active`` (DTLS client) and offer only
    ECDSA suites; instead we answer ``passive`` (RFC 4145 §4.1 lets the answerer choose), so
    the peer's client hello meets our ECDSA certificate. For offers that insist on
    ``setup:passive`` the client hello also lists ECDHE-RSA suites (installed process wide).
    """
    RTCCertificate._create_ssl_context = _ssl_context  # type: ignore[method-assign]
    remote = pc.remoteDescription
    if remote is None:
        return
    actpass = {
        media.rtp.muxId
        for media in aiortc.sdp.SessionDescription.parse(remote.sdp).media
        if media.dtls is not None and media.dtls.role == "auto"
    }
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if transceiver.mid in actpass and dtls is not None and dtls._role == "auto":
            dtls._set_role("server")


# --------------------------------------------------------------------------- ICE gathering

_ice_addresses: list[str] = []
_announced = ""
_port_range: tuple[int, int] = (0, 0)
_original_get_host_addresses = aioice.ice.get_host_addresses
_original_component_candidates = aioice.ice.Connection.get_component_candidates


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _ice_addresses:
        return list(_ice_addresses)
    return _original_get_host_addresses(use_ipv4, use_ipv6)


def _bind_in_range(address: str) -> socket.socket:
    low, high = _port_range
    ports = list(range(low, high + 1))
    random.shuffle(ports)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for port in ports:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
            return sock
        except OSError:
            sock.close()
    raise OSError(f"no free UDP port in {low}-{high} on {address}")


async def _component_candidates(
    self: aioice.ice.Connection,
    component: int,
    addresses: list[str],
    timeout: int = 5,  # noqa: ASYNC109
) -> list[Candidate]:
    """aioice's gathering, with host sockets bound in the port range / announced elsewhere.

    Mirrors ``Connection.get_component_candidates`` of the pinned aioice 0.13: each host
    socket gets aioice's receive-buffer bump (``SO_RCVBUF``), IPv4 host sockets ask the
    configured STUN server for a server-reflexive candidate (through the same socket, so
    it is in the range too), and TURN relays still come from aioice itself.
    """
    if not _announced and _port_range == (0, 0):
        return await _original_component_candidates(self, component, addresses, timeout)
    loop = asyncio.get_running_loop()
    candidates: list[Candidate] = []
    host_protocols: list[aioice.ice.StunProtocol] = []
    for address in addresses:
        try:
            if _port_range != (0, 0):
                sock = _bind_in_range(address)
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: aioice.ice.StunProtocol(self), sock=sock
                )
            else:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: aioice.ice.StunProtocol(self), local_addr=(address, 0)
                )
        except OSError:
            continue
        raw = transport.get_extra_info("socket")
        if raw is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
        bound = transport.get_extra_info("sockname")
        host = _announced or bound[0]
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=bound[1],
            type="host",
        )
        candidates.append(protocol.local_candidate)
        host_protocols.append(protocol)
    self._protocols += host_protocols
    stun: list[asyncio.Task[tuple[Candidate, None]]] = []
    if self.stun_server:
        stun = [
            asyncio.create_task(aioice.ice.server_reflexive_candidate(p, self.stun_server))
            for p in host_protocols
            if ":" not in p.transport.get_extra_info("sockname")[0]  # IPv4 only, as aioice
        ]
    # TURN relays (if any) still come from aioice itself, while the STUN queries run.
    candidates += await _original_component_candidates(self, component, [], timeout)
    if stun:
        done, pending = await asyncio.wait(stun, timeout=timeout)
        for task in pending:
            task.cancel()
        candidates += [t.result()[0] for t in done if t.exception() is None]
    return candidates


def ice_sockets(pc: RTCPeerConnection) -> list[socket.socket]:
    """The UDP sockets a peer connection's ICE agents gathered on (diagnostics, tests)."""
    out = []
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        for protocol in connection._protocols:
            raw = protocol.transport.get_extra_info("socket") if protocol.transport else None
            if raw is not None and raw not in out:
                out.append(raw)
    return out


def configure_ice(
    addresses: Sequence[str], announced: str = "", port_min: int = 0, port_max: int = 0
) -> None:
    """Gather host candidates on ``addresses`` (127.0.0.1 allowed), optionally announce a
    public address instead of the bound one, and bind within ``[port_min, port_max]``."""
    global _ice_addresses, _announced, _port_range
    _ice_addresses = list(addresses)
    _announced = announced
    _port_range = (port_min, port_max) if port_min and port_max >= port_min else (0, 0)
    aioice.ice.get_host_addresses = _get_host_addresses
    aioice.ice.Connection.get_component_candidates = _component_candidates  # type: ignore[method-assign]

"""SDP checks and codec choices for WHIP/WHEP (RFC 8829 offer/answer via aiortc)."""

from __future__ import annotations

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

from .errors import MediaError

MAX_SDP_BYTES = 64 * 1024


def check_offer(text: str) -> tuple[RTCSessionDescription, list[str]]:
    """Reject what is not an SDP offer before aiortc sees it; return it and its media kinds."""
    if not text or len(text) > MAX_SDP_BYTES:
        raise MediaError(400, "bad_sdp", "the body must be an SDP offer (application/sdp)")
    if not text.lstrip().startswith("v=0"):
        raise MediaError(400, "bad_sdp", "SDP must start with v=0")
    if "\nm=" not in text.replace("\r\n", "\n"):
        raise MediaError(400, "bad_sdp", "SDP has no media section")
    try:
        parsed = aiortc_sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc raises ValueError/IndexError/KeyError on junk
        raise MediaError(400, "bad_sdp", f"unparsable SDP: {exc!r}") from exc
    for media in parsed.media:
        if media.kind in ("audio", "video") and (
            media.ice is None or not media.ice.usernameFragment or not media.dtls
        ):
            raise MediaError(
                400, "bad_sdp", f"{media.kind} section lacks ICE credentials or DTLS fingerprint"
            )
    kinds: list[str] = []
    for media in parsed.media:
        if media.kind in ("audio", "video") and media.kind not in kinds:
            kinds.append(media.kind)
    return RTCSessionDescription(sdp=text, type="offer"), kinds


def ingest_codecs(kind: str) -> list[RTCRtpCodecCapability]:
    """Codecs a publisher may send: Opus; VP8 and H.264 constrained baseline, mode 1."""
    out = []
    for codec in sorted(
        RTCRtpSender.getCapabilities(kind).codecs, key=lambda c: c.mimeType.lower() == "video/rtx"
    ):
        name = codec.mimeType.lower()
        if name in ("video/vp8", "video/rtx", "audio/opus"):
            out.append(codec)
        elif name == "video/h264" and codec.parameters.get("packetization-mode") == "1":
            out.append(codec)
    return out


def matching_codecs(kind: str, codec: RTCRtpCodecParameters) -> list[RTCRtpCodecCapability]:
    """The capability equal to the producer's codec (no transcoding), plus RTX."""
    out = []
    for cap in RTCRtpSender.getCapabilities(kind).codecs:
        if cap.mimeType.lower() == codec.mimeType.lower():
            if cap.mimeType.lower() == "video/h264":
                if cap.parameters.get("packetization-mode") != str(
                    codec.parameters.get("packetization-mode", "1")
                ):
                    continue
                want = str(codec.parameters.get("profile-level-id", "42e01f"))[:2] + "e0"
                have = str(cap.parameters.get("profile-level-id"))[:4]
                if have != want and have[:2] + "e0" != want:
                    continue
            out.append(cap)
    return out + [
        cap
        for cap in RTCRtpSender.getCapabilities(kind).codecs
        if cap.mimeType.lower() == "video/rtx"
    ]


async def answer(pc: RTCPeerConnection) -> dict[str, RTCRtpCodecParameters]:
    """Create and set the local answer; return the codec chosen per accepted kind."""
    try:
        desc = await pc.createAnswer()
        await pc.setLocalDescription(desc)
    except (
        Exception
    ) as exc:  # aiortc fails here on inconsistent offers (e.g. a broken BUNDLE group)
        raise MediaError(400, "bad_sdp", f"cannot answer the offer: {exc}") from exc
    chosen: dict[str, RTCRtpCodecParameters] = {}
    parsed = aiortc_sdp.SessionDescription.parse(pc.localDescription.sdp)
    for media in parsed.media:
        if (
            media.kind in ("audio", "video")
            and media.port != 0
            and media.rtp.codecs
            and media.direction != "inactive"
        ):
            chosen.setdefault(media.kind, media.rtp.codecs[0])
    return chosen


# --------------------------------------------------------------------------- trickle ICE

SDPFRAG = "application/trickle-ice-sdpfrag"
MAX_SDPFRAG_BYTES = 16 * 1024


def _first_ufrag(sdp_text: str) -> str:
    for line in sdp_text.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:") :].strip()
    return ""


def ice_etag(local_sdp: str) -> str:
    """The entity-tag of a session's ICE state (RFC 9725 §4.3.1): our answer's ufrag.

    It changes only with an ICE restart, which liveshop does not do, so it is fixed for the
    session; a client's ``If-Match`` with anything else is stale (412).
    """
    return f'"{_first_ufrag(local_sdp)}"'


async def trickle(pc: RTCPeerConnection, frag: str, if_match: str | None) -> str:
    """Apply a client's trickle PATCH body (RFC 8840 SDP fragment) to ``pc``; its ETag.

    Candidates (``a=candidate``) and ``a=end-of-candidates`` go to aiortc's
    ``addIceCandidate``, whose ICE agent (aioice) keeps checking as they arrive. A fragment
    with another ``ice-ufrag`` asks for an ICE restart, which aiortc cannot do: 422
    (RFC 9725 §4.3: the session supports trickle but not restart). Nothing is applied
    unless the whole fragment parses.
    """
    if pc.localDescription is None or pc.remoteDescription is None:
        raise MediaError(409, "not_negotiated", "the session has no negotiated ICE state yet")
    etag = ice_etag(pc.localDescription.sdp)
    if if_match is not None and if_match.strip() not in ("*", etag):
        raise MediaError(412, "etag_mismatch", f"If-Match does not match the ICE session {etag}")
    if len(frag) > MAX_SDPFRAG_BYTES:
        raise MediaError(413, "too_large", f"SDP fragment over {MAX_SDPFRAG_BYTES} bytes")
    remote = aiortc_sdp.SessionDescription.parse(pc.remoteDescription.sdp)
    bundle = next((g for g in remote.group if g.semantic == "BUNDLE" and g.items), None)
    mids = [m.rtp.muxId for m in remote.media]
    remote_ufrag = _first_ufrag(pc.remoteDescription.sdp)
    candidates: list[tuple[str, str]] = []
    end = False
    mid = bundle.items[0] if bundle is not None else (mids[0] if mids else "0")
    for raw in frag.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith("a=ice-ufrag:") and line[len("a=ice-ufrag:") :] != remote_ufrag:
            raise MediaError(422, "ice_restart_unsupported", "ICE restart is not supported")
        if line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
            if mid not in mids:
                raise MediaError(400, "bad_sdpfrag", f"unknown mid {mid!r}")
        elif line.startswith("a=candidate:"):
            candidates.append((mid, line[len("a=candidate:") :]))
        elif line == "a=end-of-candidates":
            end = True
    parsed = []
    for cand_mid, text in candidates:
        try:
            candidate = aiortc_sdp.candidate_from_sdp(text)
        except (AssertionError, ValueError, IndexError) as exc:
            raise MediaError(400, "bad_sdpfrag", f"unparsable candidate {text!r}") from exc
        # With BUNDLE every m-line shares the first one's transport, the one aiortc keeps.
        candidate.sdpMid = bundle.items[0] if bundle is not None else cand_mid
        parsed.append(candidate)
    for candidate in parsed:
        await pc.addIceCandidate(candidate)
    if end:
        await pc.addIceCandidate(None)
    return etag

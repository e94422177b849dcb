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

"""Per-stream GOP cache: the last keyframe and every packet after it (instant join).

Keyframe detection reads only the RTP payload headers:
VP8 per RFC 7741 §4.2/§4.3, H.264 per RFC 6184 §5.6–§5.8.
"""

from __future__ import annotations

from aiortc.rtp import RtpPacket


def vp8_is_keyframe(payload: bytes) -> bool:
    """True for the first packet of a VP8 keyframe (RFC 7741 §4.2 descriptor, §4.3 header)."""
    if len(payload) < 2:
        return False
    first = payload[0]
    # S bit set and partition index 0: start of the frame.
    if not (first & 0x10) or (first & 0x07):
        return False
    pos = 1
    if first & 0x80:  # X: extension byte
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= len(payload):
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K
            pos += 1
    if pos >= len(payload):
        return False
    return not (payload[pos] & 0x01)  # P bit: 0 = keyframe


def h264_is_keyframe(payload: bytes) -> bool:
    """True if the packet carries an IDR slice or SPS (RFC 6184 single NAL, STAP-A, FU-A)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7):
        return True
    if nal_type == 24:  # STAP-A: 16-bit size then NAL unit, repeated
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if size == 0:
                break
            if payload[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A start of an IDR
        return bool(payload[1] & 0x80) and payload[1] & 0x1F == 5
    return False


KEYFRAME_DETECTORS = {"video/vp8": vp8_is_keyframe, "video/h264": h264_is_keyframe}


def _newer(a: int, b: int) -> bool:
    """RFC 3550 sequence-number comparison: a is after b (mod 2^16)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


class GopCache:
    """Packets from the last keyframe on, in arrival order; invalid until a keyframe."""

    def __init__(self, mime_type: str, max_packets: int = 6000) -> None:
        self._is_key = KEYFRAME_DETECTORS[mime_type.lower()]
        self.max_packets = max_packets
        self.packets: list[RtpPacket] = []
        self.valid = False
        self.keyframes = 0
        self._last_seq: int | None = None
        self._frame_ts: int | None = None
        self._frame_start = 0
        self._frame_key = False

    def add(self, packet: RtpPacket) -> bool:
        """Add one packet; return True if it started (or completed the start of) a keyframe."""
        seq = packet.sequence_number
        started = False
        in_order = self._last_seq is None or _newer(seq, self._last_seq)
        if in_order:
            self._last_seq = seq
            if packet.timestamp != self._frame_ts:
                self._frame_ts = packet.timestamp
                if not self.valid:
                    self.packets.clear()  # without a keyframe only the current frame matters
                self._frame_start = len(self.packets)
                self._frame_key = False
            if not self._frame_key and self._is_key(packet.payload):
                self._frame_key = True
                del self.packets[: self._frame_start]
                self._frame_start = 0
                self.valid = True
                self.keyframes += 1
                started = True
        self.packets.append(packet)
        if self.valid and len(self.packets) > self.max_packets:
            self.invalidate()
        return started

    def invalidate(self) -> None:
        self.packets.clear()
        self.valid = False
        self._frame_start = 0

    def snapshot(self) -> list[RtpPacket]:
        """The cached GOP starting at the keyframe, without stale retransmissions."""
        if not self.valid or not self.packets:
            return []
        first = self.packets[0].sequence_number
        return [
            p
            for p in self.packets
            if p.sequence_number == first or _newer(p.sequence_number, first)
        ]

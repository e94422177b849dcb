"""Per-stream RTP packet history, so NACKs (RFC 4585 §6.2.1) are answered by the relay."""

from __future__ import annotations

from aiortc.rtp import RtpPacket


class PacketHistory:
    """The last ``size`` packets of one stream, indexed by sequence number (a ring)."""

    __slots__ = ("_ring", "_size")

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._ring: list[RtpPacket | None] = [None] * size

    def put(self, packet: RtpPacket) -> None:
        self._ring[packet.sequence_number % self._size] = packet

    def get(self, sequence_number: int) -> RtpPacket | None:
        packet = self._ring[sequence_number % self._size]
        if packet is not None and packet.sequence_number == sequence_number:
            return packet
        return None

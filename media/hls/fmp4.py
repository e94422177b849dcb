"""Reading the ISO BMFF boxes PyAV's mp4 muxer writes (ISO/IEC 14496-12), and the few we build.

PyAV writes the init segment and each fragment (``moof`` + ``mdat``); the packager only needs to
know where a fragment ends, when it starts, how long it lasts and whether it starts with a sync
sample, so this reads ``moof/traf/{tfhd,tfdt,trun}`` and ``moov/trak/mdia/mdhd`` + ``mvex/trex``.
The Opus ``OpusHead`` (RFC 7845 §5.1) is built here: RTP carries no such header, and the muxer
derives the ``dOps`` box (Opus in ISO BMFF §4.3.2) from it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field


def iter_boxes(
    data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each complete box in ``data[start:end]``."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def complete_length(data: bytes | bytearray) -> int:
    """Length of the prefix of ``data`` made of complete top-level boxes."""
    length = 0
    for _kind, _payload, box_end in iter_boxes(data):
        length = box_end
    return length


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for k, payload, box_end in iter_boxes(data, start, end):
        if k == kind:
            return payload, box_end
    return None


@dataclass
class InitInfo:
    """Per track id: timescale, handler (``vide``/``soun``) and the trex default duration."""

    timescale: dict[int, int] = field(default_factory=dict)
    handler: dict[int, str] = field(default_factory=dict)
    default_duration: dict[int, int] = field(default_factory=dict)


def parse_init(data: bytes) -> InitInfo:
    info = InitInfo()
    moov = _child(data, 0, len(data), b"moov")
    if moov is None:
        raise ValueError("init segment without moov")
    for kind, start, end in iter_boxes(data, *moov):
        if kind == b"trak":
            tkhd = _child(data, start, end, b"tkhd")
            mdia = _child(data, start, end, b"mdia")
            if tkhd is None or mdia is None:
                continue
            version = data[tkhd[0]]
            track_id = struct.unpack_from(">I", data, tkhd[0] + (20 if version == 1 else 12))[0]
            mdhd = _child(data, *mdia, b"mdhd")
            hdlr = _child(data, *mdia, b"hdlr")
            if mdhd is not None:
                v = data[mdhd[0]]
                info.timescale[track_id] = struct.unpack_from(
                    ">I", data, mdhd[0] + (20 if v == 1 else 12)
                )[0]
            if hdlr is not None:
                info.handler[track_id] = data[hdlr[0] + 8 : hdlr[0] + 12].decode("latin-1")
        elif kind == b"mvex":
            for k, s, _e in iter_boxes(data, start, end):
                if k == b"trex":
                    track_id, _desc, duration = struct.unpack_from(">III", data, s + 4)
                    info.default_duration[track_id] = duration
    return info


@dataclass
class TrackRun:
    track_id: int
    base_time: int  # tfdt baseMediaDecodeTime, in the track's timescale
    duration: int  # sum of the sample durations
    samples: int
    first_sync: bool


def parse_moof(data: bytes, start: int, end: int, init: InitInfo) -> list[TrackRun]:
    """The track runs of one ``moof`` (its payload is ``data[start:end]``)."""
    runs: list[TrackRun] = []
    for kind, s, e in iter_boxes(data, start, end):
        if kind != b"traf":
            continue
        track_id = 0
        default_duration = 0
        default_flags = 0
        base_time = 0
        duration = 0
        samples = 0
        first_sync = True
        for k, bs, _be in iter_boxes(data, s, e):
            flags = int.from_bytes(data[bs + 1 : bs + 4], "big")
            if k == b"tfhd":
                track_id = struct.unpack_from(">I", data, bs + 4)[0]
                default_duration = init.default_duration.get(track_id, 0)
                pos = bs + 8
                if flags & 0x01:
                    pos += 8
                if flags & 0x02:
                    pos += 4
                if flags & 0x08:
                    default_duration = struct.unpack_from(">I", data, pos)[0]
                    pos += 4
                if flags & 0x10:
                    pos += 4
                if flags & 0x20:
                    default_flags = struct.unpack_from(">I", data, pos)[0]
            elif k == b"tfdt":
                if data[bs] == 1:
                    base_time = struct.unpack_from(">Q", data, bs + 4)[0]
                else:
                    base_time = struct.unpack_from(">I", data, bs + 4)[0]
            elif k == b"trun":
                count = struct.unpack_from(">I", data, bs + 4)[0]
                pos = bs + 8
                if flags & 0x01:
                    pos += 4
                first_flags = None
                if flags & 0x04:
                    first_flags = struct.unpack_from(">I", data, pos)[0]
                    pos += 4
                for i in range(count):
                    sample_duration = default_duration
                    sample_flags = default_flags
                    if flags & 0x100:
                        sample_duration = struct.unpack_from(">I", data, pos)[0]
                        pos += 4
                    if flags & 0x200:
                        pos += 4
                    if flags & 0x400:
                        sample_flags = struct.unpack_from(">I", data, pos)[0]
                        pos += 4
                    if flags & 0x800:
                        pos += 4
                    if i == 0 and samples == 0:
                        if first_flags is not None:
                            sample_flags = first_flags
                        first_sync = not (sample_flags & 0x00010000)
                    duration += sample_duration
                samples += count
        runs.append(TrackRun(track_id, base_time, duration, samples, first_sync))
    return runs


def opus_head(channels: int = 2, pre_skip: int = 312, sample_rate: int = 48000) -> bytes:
    """An ``OpusHead`` identification header (RFC 7845 §5.1), channel mapping family 0."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, sample_rate, 0, 0)


def h264_nal_units(access_unit: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit (what aiortc's H.264 depayloader returns)."""
    units = []
    for chunk in access_unit.split(b"\x00\x00\x01"):
        chunk = chunk.rstrip(b"\x00") if chunk.endswith(b"\x00") else chunk
        if chunk:
            units.append(chunk)
    return units


def avc_codec_string(sps: bytes) -> str:
    """RFC 6381 ``avc1.PPCCLL`` from a sequence parameter set NAL unit."""
    return "avc1." + sps[1:4].hex() if len(sps) >= 4 else "avc1.42e01f"

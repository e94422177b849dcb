r"""Recording: remux of the forwarded packets into a file, no re-encode (via PyAV).

A :class:`Recorder`'s tracks are :class:`~media.sink.Sink`\ s on a show's producers. Video RTP is
depayloaded (RFC 7741 VP8, RFC 6184 H.264) and assembled into frames at the marker bit;
recording starts at the first keyframe at or after Record (requested by PLI), and audio
and video share one timeline (RTP timestamps through RTCP sender reports). VP8 → WebM,
H.264 → Matroska, Opus audio in both.
"""

from __future__ import annotations

import fractions
import json
import logging
import re
import time
from pathlib import Path

import av
from aiortc.codecs import depayload
from aiortc.rtp import RtpPacket

from .gop_cache import KEYFRAME_DETECTORS
from .producer import Producer

log = logging.getLogger("liveshop.media.recorder")

NAME_RE = re.compile(r"^[A-Za-z0-9_-]+\.(webm|mkv)$")


CLUSTER_MS = 1000  # the file's cluster length: how often it reaches the disk
AUDIO_PENDING_MAX = 200  # audio frames held (≈ 4 s of Opus) while the first video frame completes


class _Track:
    """Depayloads one producer's packets into frames placed on the recording's timeline.

    A frame's time is the publisher's capture clock: the RTP timestamp mapped through the
    producer's latest RTCP sender report (RFC 3550 §6.4.1, NTP ↔ RTP) when every track has
    one, else through this track's first arrival. Audio and video thus share one timeline
    even though their RTP clocks start at unrelated random values.
    """

    def __init__(self, recorder: Recorder, producer: Producer) -> None:
        self.recorder = recorder
        self.producer = producer
        self.kind = producer.kind
        self.codec = producer.codec
        self.clock = producer.codec.clockRate
        self.stream: av.stream.Stream | None = None
        self.frame_ts: int | None = None
        self.parts: list[bytes] = []
        self.key = False
        self.started = self.kind == "audio"
        self.last_seq: int | None = None
        self.is_key = KEYFRAME_DETECTORS.get(self.codec.mimeType.lower())
        # timeline anchor: (RTP timestamp, seconds on the shared clock), fixed at the first frame
        self.anchor: tuple[int, float] | None = None
        self.last_pts = -1

    def forward(self, p: RtpPacket) -> None:
        try:
            self._add(p)
        except Exception:
            log.exception("recording %s packet failed", self.kind)

    def _add(self, p: RtpPacket) -> None:
        seq = p.sequence_number
        if self.last_seq is not None:
            if ((seq - self.last_seq) & 0xFFFF) >= 0x8000 or seq == self.last_seq:
                return  # late or duplicate (a retransmission for the viewers): too late for the file
            if seq != (self.last_seq + 1) & 0xFFFF and self.kind == "video":
                # A lost packet: drop the frame being built and resume at the next keyframe,
                # so the file never holds a frame the decoder cannot read.
                self.parts = []
                self.frame_ts = None
                self.started = False
                self.producer.request_keyframe()
        self.last_seq = seq
        if self.anchor is None:
            self.anchor = (p.timestamp, self.recorder.clock_time(self.producer, p.timestamp))
        if not self.started:
            if self.is_key is None or not self.is_key(p.payload):
                return
            self.started = True
        if self.frame_ts is not None and p.timestamp != self.frame_ts:
            self._flush()
        if self.frame_ts is None or p.timestamp != self.frame_ts:
            self.frame_ts = p.timestamp
            self.key = False
        if self.is_key is not None and self.is_key(p.payload):
            self.key = True
        self.parts.append(depayload(self.codec, p.payload))
        if p.marker or self.kind == "audio":
            self._flush()

    def seconds(self, ts: int) -> float:
        """Shared-clock time of RTP timestamp ``ts`` (wrap-safe within ±2^31 ticks)."""
        assert self.anchor is not None
        rtp, at = self.anchor
        delta = (ts - rtp) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        return at + delta / self.clock

    def _flush(self) -> None:
        if not self.parts or self.frame_ts is None:
            return
        data = b"".join(self.parts)
        self.parts = []
        ts = self.frame_ts
        self.frame_ts = None
        self.recorder._frame(self, data, self.seconds(ts), self.key)

    def producer_closed(self) -> None:
        """Sink protocol: the publisher went away; the file keeps what it has."""

    def close(self) -> None:
        self._flush()


class Recorder:
    """Records one show's producers to ``path`` until :meth:`stop`.

    The file starts at the first video keyframe at or after Record (one is requested with a
    PLI; the GOP cache's older keyframe is not used, it predates the press), and audio
    before that instant is dropped, so both tracks start together.
    """

    def __init__(self, show_id: str, directory: Path, producers: dict[str, Producer]) -> None:
        video = producers.get("video")
        ext = (
            "mkv" if video is not None and video.codec.mimeType.lower() == "video/h264" else "webm"
        )
        directory.mkdir(parents=True, exist_ok=True)
        self.show_id = show_id
        self.name = (
            f"{show_id}-{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}.{ext}"
        )
        self.path = directory / self.name
        self.container = av.open(
            str(self.path),
            "w",
            format="webm" if ext == "webm" else "matroska",
            # A cluster a second, each flushed to disk: the listing's size grows while
            # recording and a crash loses at most the last second.
            container_options={"cluster_time_limit": str(CLUSTER_MS), "flush_packets": "1"},
        )
        self.tracks = [_Track(self, p) for p in producers.values()]
        self.frames = 0
        self.started_at = time.time()
        self.closed = False
        self._streams_ready = False
        self._start_s: float | None = None  # shared-clock time of the file's first frame
        # Wall-clock ms when the file's first frame (its t = 0) arrived: what maps the show's
        # events (chat, pins, sales; stamped on arrival) onto the recording's own clock.
        self.started_at_ms: int | None = None
        self.stopped_at_ms: int | None = None
        self._pending: list[tuple[_Track, bytes, float, bool]] = []
        # Sender reports for every track: map RTP through them; else through arrival times.
        self._use_sr = all(p.sr is not None for p in producers.values())
        for track in self.tracks:
            track.producer.add_sink(track)
            if track.kind == "video":
                track.producer.request_keyframe()

    def clock_time(self, producer: Producer, ts: int) -> float:
        """Seconds on the shared clock of ``producer``'s RTP timestamp ``ts`` (its anchor)."""
        if self._use_sr and producer.sr is not None:
            ntp, rtp, _ = producer.sr
            delta = (ts - rtp) & 0xFFFFFFFF
            if delta >= 0x80000000:
                delta -= 0x100000000
            return (ntp >> 32) + (ntp & 0xFFFFFFFF) / 2**32 + delta / producer.codec.clockRate
        return time.time()

    def _make_streams(self, video_frame: bytes) -> None:
        for track in self.tracks:
            if track.kind == "video":
                name = "libvpx" if track.codec.mimeType.lower() == "video/vp8" else "libx264"
                width, height = _dimensions(track.codec.mimeType, video_frame)
                stream = self.container.add_stream(name, rate=30)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                stream.time_base = fractions.Fraction(1, track.clock)
            else:
                stream = self.container.add_stream("libopus", rate=48000)
                stream.layout = "stereo"
                stream.time_base = fractions.Fraction(1, 48000)
            track.stream = stream
        self.container.start_encoding()
        self._streams_ready = True

    def _frame(self, track: _Track, data: bytes, at: float, key: bool) -> None:
        """A complete frame at shared-clock time ``at``: start the file, hold or write it."""
        if self.closed:
            return
        has_video = any(t.kind == "video" for t in self.tracks)
        if not self._streams_ready:
            if has_video and track.kind != "video":
                if len(self._pending) < AUDIO_PENDING_MAX:
                    self._pending.append((track, data, at, key))
                return  # audio until the first video keyframe is complete
            self._make_streams(data)
            self._start_s = at
            self.started_at_ms = int(time.time() * 1000)
            self._write_meta()
            self._write(track, data, at, key)
            pending, self._pending = self._pending, []
            for args in pending:
                self._write(*args)
            return
        self._write(track, data, at, key)

    def _write(self, track: _Track, data: bytes, at: float, key: bool) -> None:
        assert track.stream is not None and self._start_s is not None
        pts = round((at - self._start_s) * track.clock)
        if pts < 0 or pts <= track.last_pts:
            return  # before the first video frame, or reordered: never non-monotonic
        track.last_pts = pts
        packet = av.Packet(data)
        packet.stream = track.stream
        packet.pts = packet.dts = pts
        packet.time_base = fractions.Fraction(1, track.clock)
        if key:
            packet.is_keyframe = True
        self.container.mux(packet)
        self.frames += 1

    def stop(self) -> Path:
        if not self.closed:
            for track in self.tracks:
                track.producer.remove_sink(track)
                track.close()
            self.closed = True
            self.stopped_at_ms = int(time.time() * 1000)
            try:
                self.container.close()
            except Exception:
                log.exception("closing recording %s", self.path)
            self._write_meta()
        return self.path

    @property
    def meta_path(self) -> Path:
        """The sidecar ``NAME.json`` beside the file (not a recording name: never listed)."""
        return self.path.with_name(self.path.name + ".json")

    def meta(self) -> dict[str, object]:
        return {
            "name": self.name,
            "show_id": self.show_id,
            "started_at_ms": self.started_at_ms,
            "stopped_at_ms": self.stopped_at_ms,
        }

    def _write_meta(self) -> None:
        """Keep the start time with the file, so it survives the process (written at t = 0 and stop)."""
        try:
            self.meta_path.write_text(json.dumps(self.meta()))
        except OSError:
            log.exception("writing %s", self.meta_path)


def _dimensions(mime_type: str, frame: bytes) -> tuple[int, int]:
    """Frame size from a keyframe: the VP8 header (RFC 6386 §9.1), or one H.264 decode."""
    if mime_type.lower() == "video/vp8" and len(frame) >= 10 and frame[3:6] == b"\x9d\x01\x2a":
        return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(
            frame[8:10], "little"
        ) & 0x3FFF
    try:
        ctx = av.CodecContext.create("h264", "r")
        for decoded in ctx.decode(av.Packet(frame)):
            return decoded.width, decoded.height
        for decoded in ctx.decode(None):
            return decoded.width, decoded.height
    except av.error.FFmpegError:
        pass
    return 640, 480

"""HLS packager: a show's forwarded H.264 + Opus packets remuxed into LL-HLS parts and segments.

Fed exactly like the recorder (a :class:`~media.sink.Sink` per producer, frames assembled by
the recorder's depayloader), it hands frames to PyAV's mp4 muxer in CMAF fragmented mode
(``empty_moov+default_base_moof+frag_keyframe+cmaf`` with ``frag_duration`` = the part length)
writing to memory. Each ``moof``+``mdat`` the muxer emits is one partial segment; a segment is a
run of parts that starts at a keyframe part (keyframes are asked of the publisher at the segment
cadence through the producer's throttled PLI). Only a window of ``window_segments`` segments is
kept: memory is bounded whatever the show's length.

Waiting (blocking playlist reload, preload hints) uses one :class:`asyncio.Event` replaced on
every new part: a waiter wakes exactly when something changed, never on a timer.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av

from ..producer import Producer
from ..recorder import _dimensions, _Track
from ..router import Router
from . import fmp4

log = logging.getLogger("liveshop.media.hls")

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000


class HlsUnavailable(Exception):
    """The show's media cannot be carried by HLS (VP8 video, or no video)."""


@dataclass
class HlsConfig:
    segment_s: float = 2.0  # a keyframe is requested when a segment reaches about this length
    part_s: float = 0.25  # the muxer cuts a fragment (a part) once it holds this much media
    part_target_s: float = 0.334  # EXT-X-PART-INF PART-TARGET: the longest part we emit
    target_duration_s: int = (
        4  # EXT-X-TARGETDURATION; a segment is cut here even without a keyframe
    )
    window_segments: int = 6  # complete segments kept (and listed) besides the open one
    parts_listed_segments: int = 3  # segments at the live edge whose parts are listed
    block_timeout_s: float = 6.0  # a blocking request waits at most this long

    @property
    def part_hold_back_s(self) -> float:
        return round(3 * self.part_target_s, 3)  # RFC 8216bis §4.4.3.8: at least 2× PART-TARGET


@dataclass
class Part:
    number: int  # global, so a preload hint's name is right whichever segment the part lands in
    msn: int
    index: int
    data: bytes
    duration: float
    independent: bool


@dataclass
class Segment:
    msn: int
    start: float  # seconds on the show's media timeline
    program_time: float  # wall clock (Unix seconds) of the first frame
    init: int  # generation of the init segment (a replaced publisher starts a new one)
    discontinuity: bool
    parts: list[Part] = field(default_factory=list)
    duration: float = 0.0
    complete: bool = False
    _data: bytes | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = b"".join(p.data for p in self.parts)
        return self._data


class _HlsTrack(_Track):
    """The recorder's depayloader (RFC 6184 / Opus), feeding the packager instead of a file."""

    def __init__(self, packager: HlsPackager, producer: Producer) -> None:
        super().__init__(packager, producer)  # type: ignore[arg-type]
        self.base_ext: int | None = None  # the first frame handed to the muxer (RTP units)
        self.offset = 0  # its position on the media timeline (RTP units)
        self.last_pts = -1
        # The packager keeps each track on its own RTP clock (it aligns audio to video itself),
        # so the recorder's shared-clock anchor is unused: fixed here, never looked up.
        self.anchor = (0, 0.0)
        self.first_ts: int | None = None
        self.last_ext = 0

    def _flush(self) -> None:
        """One assembled frame to the packager, in RTP units since this track's first frame."""
        if not self.parts or self.frame_ts is None:
            return
        data = b"".join(self.parts)
        self.parts = []
        ts, self.frame_ts = self.frame_ts, None
        if self.first_ts is None:
            self.first_ts = ts
        ext = (ts - self.first_ts) & 0xFFFFFFFF
        if ext < self.last_ext and self.last_ext - ext < 0x80000000:
            return  # reordered frame: drop rather than hand the muxer a timestamp going back
        self.last_ext = ext
        self.recorder._write(self, data, ext, self.key)  # type: ignore[attr-defined]


class _Muxer:
    """PyAV's mp4 muxer writing CMAF fragments into memory; returns each complete fragment."""

    def __init__(
        self, sps: bytes, pps: bytes, width: int, height: int, audio: bool, part_s: float
    ) -> None:
        self.buffer = bytearray()
        self.container = av.open(
            self,  # type: ignore[arg-type]
            "w",
            format="mp4",
            options={
                "movflags": "empty_moov+default_base_moof+frag_keyframe+cmaf",
                "frag_duration": str(int(part_s * 1_000_000)),
                "flush_packets": "1",
                # interleaving waits for audio; a muted publisher (Opus DTX) must not stall video
                "max_interleave_delta": "500000",
            },
        )
        self.video = self.container.add_stream("h264", rate=30)
        self.video.width, self.video.height = width, height
        self.video.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.video.codec_context.extradata = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps
        self.audio = None
        if audio:
            self.audio = self.container.add_stream("opus", rate=AUDIO_CLOCK)
            self.audio.time_base = fractions.Fraction(1, AUDIO_CLOCK)
            self.audio.codec_context.extradata = fmp4.opus_head()
        self.container.start_encoding()
        size = fmp4.complete_length(self.buffer)
        self.init = bytes(self.buffer[:size])
        del self.buffer[:size]
        self.info = fmp4.parse_init(self.init)

    # file-like protocol used by PyAV's output IO
    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def seekable(self) -> bool:
        return False

    def mux(self, stream: av.stream.Stream, data: bytes, pts: int, key: bool) -> list[bytes]:
        packet = av.Packet(data)
        packet.stream = stream
        packet.pts = packet.dts = pts
        packet.time_base = stream.time_base
        if key:
            packet.is_keyframe = True
        self.container.mux(packet)
        return self.take()

    def take(self) -> list[bytes]:
        """Complete ``moof``+``mdat`` pairs written so far (anything else is dropped)."""
        fragments: list[bytes] = []
        moof_at: int | None = None
        consumed = 0
        for kind, payload, end in fmp4.iter_boxes(self.buffer):
            header = payload - 8
            if kind == b"moof":
                moof_at = header
            elif kind == b"mdat" and moof_at is not None:
                fragments.append(bytes(self.buffer[moof_at:end]))
                moof_at = None
            if moof_at is None:
                consumed = end
        del self.buffer[:consumed]
        return fragments

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # closing writes a trailer we do not serve
            log.debug("closing the HLS muxer", exc_info=True)


class HlsPackager:
    """LL-HLS for one live show, owned by its Router from go-live until the publisher ends."""

    def __init__(
        self,
        show_id: str,
        producers: dict[str, Producer],
        config: HlsConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_codecs(producers)
        self.show_id = show_id
        self.config = config or HlsConfig()
        self.clock = clock
        self.key = secrets.token_urlsafe(12)  # an unguessable path: CDNs cache it without tokens
        self.segments: list[Segment] = []
        self.parts: dict[int, Part] = {}
        self.inits: dict[int, bytes] = {}
        self.next_part = 0
        self.next_msn = 0
        self.discontinuity_sequence = 0
        self.version = 0
        self.rendered: tuple[int, str] | None = None  # (version, media playlist), see hls_api
        self.closed = False
        self.codecs = ""
        self.resolution = (0, 0)
        self.bandwidth = 0
        self.started_at = clock()
        self._changed = asyncio.Event()
        self._gen = -1
        self._timeline = 0.0  # where the current generation starts on the media timeline
        self._muxer: _Muxer | None = None
        self._tracks: list[_HlsTrack] = []
        self._producers: dict[str, Producer] = {}
        self._wall_base = math.inf
        self._last_video: tuple[int, float] = (0, 0.0)
        self._keyframe_asked = False
        self._discontinuity = False
        self._bytes = 0
        self.cpu_s = 0.0  # process time spent packaging (benchmarks/hls_latency.py reads it)
        self.attach(producers)

    # ------------------------------------------------------------------ producers
    def attach(self, producers: dict[str, Producer]) -> None:
        """Follow a (new) publisher: a new init segment and a discontinuity, same sequence numbers."""
        check_codecs(producers)
        self._detach()
        self._close_segment()
        if self._gen >= 0:
            self._discontinuity = True
            self._timeline = (
                self.segments[-1].start + self.segments[-1].duration if self.segments else 0.0
            )
        self._gen += 1
        self._wall_base = math.inf
        self._producers = dict(producers)
        self._tracks = [_HlsTrack(self, p) for p in producers.values()]
        for track in self._tracks:
            track.producer.add_sink(track)
            if track.kind == "video" and track.producer.gop is not None:
                for packet in track.producer.gop.snapshot():  # start at the cached keyframe
                    track.forward(packet)
        video = producers.get("video")
        if video is not None and self._muxer is None and video.media_ssrc is not None:
            video.request_keyframe()  # not before the first packet: that would throttle the real PLI

    def _detach(self) -> None:
        for track in self._tracks:
            track.producer.remove_sink(track)
        self._tracks = []
        if self._muxer is not None:
            self._muxer.close()
            self._muxer = None

    def stop(self) -> None:
        """Stop packaging (the publisher ended): waiters wake and get the playlist with ENDLIST."""
        if self.closed:
            return
        self._detach()
        self._close_segment()
        self.closed = True
        self._notify()

    # ------------------------------------------------------------------ frames in
    def _write(self, track: _HlsTrack, data: bytes, ext: int, key: bool) -> None:
        """Called by a track with one assembled frame (``ext``: RTP units since its first frame)."""
        if self.closed:
            return
        t0 = time.process_time()
        try:
            self._mux(track, data, ext, key)
        finally:
            self.cpu_s += time.process_time() - t0

    def _mux(self, track: _HlsTrack, data: bytes, ext: int, key: bool) -> None:
        now = self.clock()
        if self._muxer is None:
            if track.kind != "video" or not key or not self._start_muxer(data):
                return  # start at a video keyframe that carries its SPS/PPS
        muxer = self._muxer
        assert muxer is not None
        if track.base_ext is None:
            track.base_ext = ext
            if track.kind == "video":
                track.offset = round(self._timeline * VIDEO_CLOCK)
            else:  # audio joins the video's timeline where the video is now
                pts, at = self._last_video
                track.offset = pts * AUDIO_CLOCK // VIDEO_CLOCK + round((now - at) * AUDIO_CLOCK)
        pts = track.offset + ((ext - track.base_ext) & 0xFFFFFFFF)
        if pts <= track.last_pts:
            return  # the muxer needs increasing timestamps: drop a reordered frame
        track.last_pts = pts
        if track.kind == "video":
            self._last_video = (pts, now)
            self._wall_base = min(self._wall_base, now - pts / VIDEO_CLOCK)
            stream = muxer.video
        elif muxer.audio is not None:
            stream = muxer.audio
        else:
            return
        self._bytes += len(data)
        for fragment in muxer.mux(stream, data, pts, key and track.kind == "video"):
            self._add_part(fragment, muxer.info)

    def _start_muxer(self, keyframe: bytes) -> bool:
        units = fmp4.h264_nal_units(keyframe)
        sps = next((u for u in units if u[0] & 0x1F == 7), None)
        pps = next((u for u in units if u[0] & 0x1F == 8), None)
        if sps is None or pps is None:
            return False
        width, height = _dimensions("video/h264", keyframe)
        audio = "audio" in self._producers
        self._muxer = _Muxer(sps, pps, width, height, audio, self.config.part_s)
        self.inits[self._gen] = self._muxer.init
        self.codecs = fmp4.avc_codec_string(sps) + (",opus" if audio else "")
        self.resolution = (width, height)
        return True

    # ------------------------------------------------------------------ parts and segments
    def _add_part(self, fragment: bytes, info: fmp4.InitInfo) -> None:
        runs = fmp4.parse_moof(fragment, 8, _box_end(fragment), info)
        if not runs:
            return
        video = next((r for r in runs if info.handler.get(r.track_id) == "vide"), runs[0])
        scale = info.timescale.get(video.track_id, VIDEO_CLOCK)
        start = video.base_time / scale
        duration = video.duration / scale
        independent = info.handler.get(video.track_id) == "vide" and video.first_sync
        config = self.config
        segment = self.segments[-1] if self.segments and not self.segments[-1].complete else None
        if segment is not None and (
            (independent and segment.duration >= config.segment_s / 2)
            or segment.duration + duration > config.target_duration_s
        ):
            self._close_segment()
            segment = None
        if segment is None:
            if not self.segments and not independent:
                return  # the first segment starts with a keyframe
            wall = self._wall_base if self._wall_base < math.inf else self.clock() - start
            segment = Segment(
                self.next_msn,
                start,
                wall + start,
                self._gen,
                self._discontinuity and bool(self.segments),
            )
            self._discontinuity = False
            self.next_msn += 1
            self.segments.append(segment)
            self._keyframe_asked = False
            self._trim()
        part = Part(
            self.next_part, segment.msn, len(segment.parts), fragment, duration, independent
        )
        self.next_part += 1
        segment.parts.append(part)
        segment.duration += duration
        self.parts[part.number] = part
        if not self._keyframe_asked and segment.duration >= config.segment_s - config.part_s:
            video_producer = self._producers.get("video")
            if video_producer is not None:
                video_producer.request_keyframe()  # throttled by the producer to one a second
            self._keyframe_asked = True
        elapsed = max(1e-3, self.clock() - self.started_at)
        self.bandwidth = max(self.bandwidth, int(self._bytes * 8 / elapsed * 1.2))
        self._notify()

    def _close_segment(self) -> None:
        if self.segments and not self.segments[-1].complete:
            self.segments[-1].complete = True
            self._notify()

    def _trim(self) -> None:
        keep = self.config.window_segments + 1
        while len(self.segments) > keep:
            old = self.segments.pop(0)
            for part in old.parts:
                self.parts.pop(part.number, None)
            if old.discontinuity:
                self.discontinuity_sequence += 1
            if not any(s.init == old.init for s in self.segments):
                self.inits.pop(old.init, None)
        # parts far from the live edge are no longer listed: keep only their segment's bytes
        for old in self.segments[: -self.config.parts_listed_segments - 1]:
            if old.complete and old.parts and old.parts[0].data:
                old.data  # noqa: B018  (join once, then drop the parts' copies)
                for part in old.parts:
                    self.parts.pop(part.number, None)
                    part.data = b""

    def _notify(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ readers
    async def wait(self, ready: Callable[[], bool], within: float) -> bool:
        """Wait until ``ready()`` holds (re-checked on every change), or ``within`` seconds pass."""
        deadline = time.monotonic() + within
        while not ready():
            if self.closed:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return ready()
        return True

    def has_part(self, msn: int, part: int | None) -> bool:
        """RFC 8216bis §6.2.5.2: the playlist holds part ``part`` of segment ``msn``, or later."""
        for segment in self.segments:
            if segment.msn > msn and segment.parts:
                return True
            if segment.msn == msn and (
                segment.complete if part is None else len(segment.parts) > part
            ):
                return True
        return False

    @property
    def last_msn(self) -> int:
        return self.segments[-1].msn if self.segments else -1

    def segment(self, msn: int) -> Segment | None:
        for segment in self.segments:
            if segment.msn == msn:
                return segment if segment.complete else None
        return None

    def status(self) -> dict[str, object]:
        """What the studio shows: whether HLS is on, how far the live edge is behind the camera."""
        edge_delay = None
        if self.segments and self._wall_base < math.inf:
            last = self.segments[-1]
            edge_delay = round(self.clock() - (last.program_time + last.duration), 3)
        return {
            "available": True,
            "codecs": self.codecs,
            "segments": len([s for s in self.segments if s.complete]),
            "parts": self.next_part,
            "edge_delay_s": edge_delay,
            # what a player at PART-HOLD-BACK behind the edge sees (plus its own buffering)
            "expected_latency_s": None
            if edge_delay is None
            else round(edge_delay + self.config.part_hold_back_s, 3),
            "packager_cpu_s": round(self.cpu_s, 3),
        }


def _box_end(data: bytes) -> int:
    return int.from_bytes(data[:4], "big")


def check_codecs(producers: dict[str, Producer]) -> None:
    """Raise :class:`HlsUnavailable` unless the video is H.264 (HLS carries no VP8)."""
    video = producers.get("video")
    if video is None:
        raise HlsUnavailable("this show has no video")
    if video.codec.mimeType.lower() != "video/h264":
        raise HlsUnavailable(
            f"HLS needs H.264 video; this show sends {video.codec.mimeType.split('/')[-1]} "
            "(publish H.264 to offer HLS)"
        )


def follow_hls(router: Router, config: HlsConfig | None) -> None:
    """After a router got (new) producers: a live H.264 show gets a packager, a replacing
    publisher continues it, a VP8 one ends it. ``config`` None: LL-HLS is off."""
    if config is None:
        return
    try:
        if router.hls is None:
            router.hls = HlsPackager(router.show_id, router.producers, config)
        else:
            router.hls.attach(router.producers)
    except HlsUnavailable:
        stop_hls(router)


def stop_hls(router: Router) -> None:
    """The router's publisher ended: its packager stops (waiting players get ENDLIST)."""
    if router.hls is not None:
        router.hls.stop()
        router.hls = None

"""Synthetic WHIP publisher: ``python -m media.publish --url URL --show ID --token T --source testsrc``.

Publishes a generated test pattern with a visible clock (encoded once per frame with
libvpx or libx264, or pre-encoded once and looped with ``--preencode``), or a file: a
file already VP8/H.264 is sent without re-encoding. Audio is a quiet Opus tone.
PLI/FIR from the relay forces the next frame to be a keyframe.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamTrack

from .aiortc_internals import configure_ice, keyframe_requested
from .session import close_peer

log = logging.getLogger("liveshop.media.publish")

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)

_FONT = {  # 5x7 bitmap font, rows top to bottom
    "0": ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    "1": ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    "2": ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    "3": ["11110", "00001", "00001", "01110", "00001", "00001", "11110"],
    "4": ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    "5": ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    "6": ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    "7": ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    "8": ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    "9": ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
    ":": ["00000", "00100", "00100", "00000", "00100", "00100", "00000"],
    ".": ["00000", "00000", "00000", "00000", "00000", "00100", "00100"],
    " ": ["00000"] * 7,
    "#": ["01010", "11111", "01010", "01010", "01010", "11111", "01010"],
}


@dataclass
class PublishOptions:
    width: int = 640
    height: int = 360
    fps: int = 30
    bitrate: int = 1_500_000
    codec: str = "vp8"
    keyint_s: float = 2.0
    preencode_s: float = 0.0
    audio: bool = True
    source: str = "testsrc"
    loop: bool = False


class ClockPattern:
    """A moving gradient with a wall clock and frame counter burnt in (Y plane only)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.grad = bytes((x * 255 // max(1, width - 1)) for x in range(width)) * 2
        self.scale = max(2, height // 60)
        self.chroma = bytes([128]) * ((width // 2) * (height // 2))

    def frame(self, index: int, fps: int) -> av.VideoFrame:
        w, h, s = self.width, self.height, self.scale
        shift = (index * 8) % w
        row = self.grad[shift : shift + w]
        y = bytearray(row * h)
        now = time.time()
        text = (
            time.strftime("%H:%M:%S", time.localtime(now))
            + f".{int(now * 1000) % 1000:03d} #{index}"
        )
        x0, y0 = s * 2, s * 2
        on = bytes([235]) * s
        for ci, ch in enumerate(text):
            glyph = _FONT.get(ch, _FONT[" "])
            cx = x0 + ci * 6 * s
            if cx + 5 * s >= w:
                break
            for gy, bits in enumerate(glyph):
                for gx, bit in enumerate(bits):
                    if bit == "1":
                        for r in range(s):
                            off = (y0 + gy * s + r) * w + cx + gx * s
                            y[off : off + s] = on
        frame = av.VideoFrame(w, h, "yuv420p")
        for plane, data, pw in (
            (frame.planes[0], y, w),
            (frame.planes[1], self.chroma, w // 2),
            (frame.planes[2], self.chroma, w // 2),
        ):
            if plane.line_size == pw:
                plane.update(bytes(data))
            else:
                rows = len(data) // pw
                padded = b"".join(
                    bytes(data[r * pw : (r + 1) * pw]) + bytes(plane.line_size - pw)
                    for r in range(rows)
                )
                plane.update(padded)
        frame.pts = index
        frame.time_base = fractions.Fraction(1, fps)
        return frame


def make_encoder(options: PublishOptions) -> av.CodecContext:
    name = "libvpx" if options.codec == "vp8" else "libx264"
    ctx = av.CodecContext.create(name, "w")
    ctx.width, ctx.height = options.width, options.height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = fractions.Fraction(1, options.fps)
    ctx.framerate = fractions.Fraction(options.fps, 1)
    ctx.bit_rate = options.bitrate
    gop = max(1, int(options.keyint_s * options.fps))
    ctx.gop_size = gop
    if name == "libvpx":
        ctx.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
        }
    else:
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:repeat-headers=1",
        }
    return ctx


class EncodedVideoTrack(MediaStreamTrack):
    """Yields encoded ``av.Packet``s paced at the frame rate; aiortc only packetizes them."""

    kind = "video"

    def __init__(self, options: PublishOptions) -> None:
        super().__init__()
        self.options = options
        self.sender: RTCRtpSender | None = None
        self.frames_sent = 0
        self.keyframes_forced = 0
        self._pattern = ClockPattern(options.width, options.height)
        self._encoder = make_encoder(options)
        self._loop_packets: list[tuple[bytes, bool]] | None = None
        self._start: float | None = None
        self._index = 0
        if options.preencode_s > 0:
            self._loop_packets = self._preencode(int(options.preencode_s * options.fps))

    def _encode(self, index: int, keyframe: bool) -> av.Packet:
        fps = self.options.fps
        frame = self._pattern.frame(index, fps)
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        packets = self._encoder.encode(frame)
        while not packets:
            packets = self._encoder.encode(self._pattern.frame(index, fps))
        return packets[0]

    def _preencode(self, count: int) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        for i in range(count):
            for packet in self._encoder.encode(self._pattern.frame(i, self.options.fps)):
                out.append((bytes(packet), packet.is_keyframe))
        for packet in self._encoder.encode(None):
            out.append((bytes(packet), packet.is_keyframe))
        return out

    async def recv(self) -> av.Packet:
        fps = self.options.fps
        if self._start is None:
            self._start = time.monotonic()
        # Always yields: a source running behind would otherwise encode and send frame after
        # frame without ever giving the event loop back (aiortc's send path does not suspend).
        await asyncio.sleep(max(0.0, self._start + self._index / fps - time.monotonic()))
        index = self._index
        self._index += 1
        force = self.sender is not None and keyframe_requested(self.sender)
        if self._loop_packets is not None:
            data, _ = self._loop_packets[index % len(self._loop_packets)]
            packet = av.Packet(data)
        else:
            if force:
                self.keyframes_forced += 1
            # Drawn and encoded on a worker thread: on a busy machine an encode on the loop
            # delays the audio track's sends, and aiortc's sender reports then map the audio
            # clock late by as much (seen as a recording's audio starting 0.1 s after video).
            packet = await asyncio.get_running_loop().run_in_executor(
                None, self._encode, index, force
            )
        packet.pts = index
        packet.time_base = fractions.Fraction(1, fps)
        self.frames_sent += 1
        return packet


class FileVideoTrack(MediaStreamTrack):
    """Packets of a file's video stream; VP8/H.264 pass through, others are re-encoded."""

    kind = "video"

    def __init__(self, path: str, options: PublishOptions) -> None:
        super().__init__()
        self.path, self.options = path, options
        self.sender: RTCRtpSender | None = None
        with av.open(path) as probe:  # decide the codec before the offer is made
            name = probe.streams.video[0].codec_context.name
        if name in ("vp8", "h264"):
            options.codec = name
        self._gen = self._packets()
        self._start: float | None = None
        self._offset = 0.0

    def _packets(self) -> Any:
        while True:
            container = av.open(self.path)
            stream = container.streams.video[0]
            name = stream.codec_context.name
            passthrough = name in ("vp8", "h264")
            if name == "h264":
                self.options.codec = "h264"
                bsf = av.BitStreamFilterContext("h264_mp4toannexb", stream)
            else:
                bsf = None
                self.options.codec = "vp8" if name == "vp8" else self.options.codec
            encoder = None if passthrough else make_encoder(self.options)
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                t = float(packet.pts * packet.time_base)
                if passthrough:
                    for out in bsf.filter(packet) if bsf else [packet]:
                        yield t, out
                else:
                    for frame in packet.decode():
                        frame = frame.reformat(self.options.width, self.options.height, "yuv420p")
                        frame.pts = None
                        for out in encoder.encode(frame):  # type: ignore[union-attr]
                            yield t, out
            container.close()
            if not self.options.loop:
                return

    async def recv(self) -> av.Packet:
        try:
            t, packet = next(self._gen)
        except StopIteration:
            self.stop()
            raise
        if self._start is None:
            self._start = time.monotonic() - t
        if t + self._offset < time.monotonic() - self._start - 5:  # looped: shift the clock
            self._offset = time.monotonic() - self._start - t
        await asyncio.sleep(max(0.0, self._start + t + self._offset - time.monotonic()))
        packet.pts = int((t + self._offset) * 90000)
        packet.time_base = fractions.Fraction(1, 90000)
        return packet


class ToneTrack(MediaStreamTrack):
    """A quiet 440 Hz tone in 20 ms frames; aiortc encodes it to Opus."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._pts = 0
        samples = int(48000 * AUDIO_PTIME)
        self._frames = []
        for k in range(50):  # one second, seamless at 440 Hz
            pcm = bytearray()
            for i in range(samples):
                v = int(2000 * math.sin(2 * math.pi * 440 * (k * samples + i) / 48000))
                pcm += v.to_bytes(2, "little", signed=True)
            self._frames.append(bytes(pcm))

    async def recv(self) -> av.AudioFrame:
        samples = int(48000 * AUDIO_PTIME)
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._pts / 48000 - time.monotonic()))
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(self._frames[(self._pts // samples) % 50])
        frame.sample_rate = 48000
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, 48000)
        self._pts += samples
        return frame


def prefer_codec(pc: RTCPeerConnection, codec: str) -> None:
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "video":
            continue
        caps = RTCRtpSender.getCapabilities("video").codecs
        want = "video/vp8" if codec == "vp8" else "video/h264"
        chosen = [c for c in caps if c.mimeType.lower() == want]
        if want == "video/h264":
            chosen = [
                c for c in chosen if c.parameters.get("profile-level-id") == "42e01f"
            ] or chosen
        transceiver.setCodecPreferences(
            chosen + [c for c in caps if c.mimeType.lower() == "video/rtx"]
        )


class Publisher:
    """One WHIP session (RFC 9725): POST the offer, keep the Location, DELETE to stop."""

    def __init__(self, url: str, show_id: str, token: str, options: PublishOptions) -> None:
        self.url, self.show_id, self.token, self.options = url.rstrip("/"), show_id, token, options
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location: str | None = None
        self.video: EncodedVideoTrack | FileVideoTrack | None = None
        self._closed = False

    async def start(self, replace: bool = False) -> None:
        if self.options.source == "testsrc":
            self.video = EncodedVideoTrack(self.options)
        else:
            self.video = FileVideoTrack(self.options.source, self.options)
        sender = self.pc.addTrack(self.video)
        self.video.sender = sender
        if self.options.audio:
            self.pc.addTrack(ToneTrack())
        prefer_codec(self.pc, self.options.codec)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        endpoint = f"{self.url}/whip/{self.show_id}" + ("?replace=1" if replace else "")
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            async with http.post(
                endpoint,
                data=self.pc.localDescription.sdp,
                headers={
                    "Content-Type": "application/sdp",
                    "Authorization": f"Bearer {self.token}",
                },
            ) as resp:
                body = await resp.text()
                if resp.status != 201:
                    self._closed = True
                    await close_peer(self.pc, "publisher")
                    raise RuntimeError(f"WHIP {resp.status}: {body}")
                self.location = resp.headers.get("Location")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    async def stop(self) -> None:
        if self.location:
            target = self.location if self.location.startswith("http") else self.url + self.location
            try:
                async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
                    async with http.delete(
                        target, headers={"Authorization": f"Bearer {self.token}"}
                    ):
                        pass
            except aiohttp.ClientError:
                pass
            self.location = None
        if not self._closed:
            self._closed = True
            await close_peer(self.pc, "publisher")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m media.publish", description=__doc__)
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--show", required=True)
    p.add_argument("--token", required=True, help="host token")
    p.add_argument("--source", default="testsrc", help="testsrc or a media file")
    p.add_argument("--loop", action="store_true", help="loop the file")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--bitrate", type=int, default=1_500_000)
    p.add_argument("--codec", choices=("vp8", "h264"), default="vp8")
    p.add_argument("--keyint", type=float, default=2.0, help="seconds between keyframes")
    p.add_argument(
        "--preencode", type=float, default=0.0, help="encode this many seconds once and loop them"
    )
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: run until ^C)"
    )
    p.add_argument("--no-audio", action="store_true")
    p.add_argument(
        "--replace", action="store_true", help="take over a show that already has a publisher"
    )
    p.add_argument(
        "--ice-address", default="127.0.0.1", help="local address to gather ICE candidates on"
    )
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    configure_ice([args.ice_address] if args.ice_address else [])
    options = PublishOptions(
        width=args.width,
        height=args.height,
        fps=args.fps,
        bitrate=args.bitrate,
        codec=args.codec,
        keyint_s=args.keyint,
        preencode_s=args.preencode,
        audio=not args.no_audio,
        source=args.source,
        loop=args.loop,
    )
    publisher = Publisher(args.url, args.show, args.token, options)
    await publisher.start(replace=args.replace)
    print(
        f"publishing {args.source} ({args.codec} {args.width}x{args.height}@{args.fps}) -> {publisher.location}",
        flush=True,
    )
    try:
        if args.duration:
            await asyncio.sleep(args.duration)
        else:
            await asyncio.Event().wait()
    finally:
        await publisher.stop()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(run(parse_args(argv)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

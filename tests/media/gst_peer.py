"""A GStreamer webrtcbin WHIP publisher / WHEP player: the third-party peer of the interop tests.

Run by the system ``/usr/bin/python3`` (Debian's python3-gi and GStreamer 1.22), not the
project venv, so it imports nothing from liveshop. It does what a GStreamer user's
application does: build a webrtcbin pipeline, wait for ICE gathering to complete (no
trickle), POST the offer (RFC 9725 §4.2), apply the answer, and DELETE the session at the end.

    gst_peer.py publish URL TOKEN --codec vp8|h264        publish until SIGTERM / stdin EOF
    gst_peer.py play URL TOKEN --codec vp8|h264 --frames N  exit 0 once N frames are decoded

It reports on stdout, one event a line: ``location <path>``, ``answer a=setup:<role>``, ``state <ice/dtls state>``,
``decoded <n> <width>x<height>``, ``done``; and exits non-zero with a reason on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO = {
    "vp8": (
        "vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=300000 ! rtpvp8pay pt=96",
        "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
    ),
    "h264": (
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=300 "
        "! video/x-h264,profile=constrained-baseline ! rtph264pay pt=102 config-interval=-1 "
        "aggregate-mode=zero-latency",
        "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000",
    ),
}
AUDIO = "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111"
AUDIO_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"


def say(*words: object) -> None:
    print(*words, flush=True)


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.location = ""
        self.decoded = 0
        self.status = 0
        if args.mode == "publish":
            encode, caps = VIDEO[args.codec]
            desc = (
                "webrtcbin name=webrtc bundle-policy=max-bundle "
                f"videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
                f"! videoconvert ! {encode} ! {caps} ! webrtc. "
            )
            if not args.no_audio:
                desc += f"{AUDIO} ! {AUDIO_CAPS} ! webrtc. "
            self.pipeline = Gst.parse_launch(desc)
            self.webrtc = self.pipeline.get_by_name("webrtc")
        else:
            self.pipeline = Gst.Pipeline.new("player")
            self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
            self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
            self.pipeline.add(self.webrtc)
            recvonly = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
            caps = VIDEO[args.codec][1]
            if args.codec == "h264":
                caps += ",packetization-mode=(string)1,profile-level-id=(string)42e01f"
            self.webrtc.emit("add-transceiver", recvonly, Gst.Caps.from_string(caps))
            if not args.no_audio:
                self.webrtc.emit("add-transceiver", recvonly, Gst.Caps.from_string(AUDIO_CAPS))
            self.webrtc.connect("pad-added", self.on_pad)
        # Kept for the peer's lifetime: PyGObject does not take its own reference on this
        # property, so dropping the wrapper would free webrtcbin's agent under it.
        self.agent = self.webrtc.get_property("ice-agent")
        for address in args.local_ip:  # libnice skips loopback unless told
            self.agent.emit("add-local-ip-address", address)
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_state)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    # ------------------------------------------------------------------ signalling

    def on_negotiation_needed(self, element: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(self.on_offer, None)
        element.emit("create-offer", None, promise)

    def on_offer(self, promise: Gst.Promise, _data: object) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, element: Gst.Element, _pspec: object) -> None:
        if (
            element.get_property("ice-gathering-state")
            != GstWebRTC.WebRTCICEGatheringState.COMPLETE
        ):
            return
        GLib.idle_add(self.post_offer)

    def post_offer(self) -> bool:
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        if self.args.setup:  # as a client that insists on a DTLS role would offer
            sdp = sdp.replace("a=setup:actpass", f"a=setup:{self.args.setup}")
        request = urllib.request.Request(
            self.args.url,
            data=sdp.encode(),
            method="POST",
            headers={
                "Content-Type": "application/sdp",
                "Authorization": f"Bearer {self.args.token}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                answer = resp.read().decode()
                self.location = resp.headers["Location"]
        except urllib.error.HTTPError as exc:
            self.fail(f"POST {self.args.url}: {exc.code} {exc.read().decode(errors='replace')}")
            return False
        except (urllib.error.URLError, OSError) as exc:
            self.fail(f"POST {self.args.url}: {exc}")
            return False
        say("location", self.location)
        for line in answer.splitlines():
            if line.startswith("a=setup:"):
                say("answer", line)
                break
        _, message = GstSdp.SDPMessage.new_from_text(answer)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        self.webrtc.emit("set-remote-description", desc, Gst.Promise.new())
        return False

    def delete(self) -> None:
        if not self.location:
            return
        url = urllib.parse.urljoin(self.args.url, self.location)
        request = urllib.request.Request(
            url, method="DELETE", headers={"Authorization": f"Bearer {self.args.token}"}
        )
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except (urllib.error.URLError, OSError) as exc:
            print(f"DELETE {url}: {exc}", file=sys.stderr, flush=True)
        self.location = ""

    # ------------------------------------------------------------------ media

    def on_state(self, element: Gst.Element, _pspec: object) -> None:
        state = element.get_property("connection-state")
        say("state", state.value_nick)
        if state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            self.fail("peer connection failed (ICE or DTLS)")

    def on_pad(self, _element: Gst.Element, pad: Gst.Pad) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded_pad)
        self.pipeline.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded_pad(self, _decode: Gst.Element, pad: Gst.Pad) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        if caps.to_string().startswith("video/"):
            sink.set_property("signal-handoffs", True)
            sink.connect("handoff", self.on_frame)
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def on_frame(self, _sink: Gst.Element, _buffer: Gst.Buffer, pad: Gst.Pad) -> None:
        self.decoded += 1
        structure = pad.get_current_caps().get_structure(0)
        width, height = structure.get_value("width"), structure.get_value("height")
        if self.decoded == 1 or self.decoded % 10 == 0 or self.decoded == self.args.frames:
            say("decoded", self.decoded, f"{width}x{height}")
        if self.args.frames and self.decoded == self.args.frames:
            GLib.idle_add(self.finish)

    # ------------------------------------------------------------------ lifecycle

    def on_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        self.fail(f"{error.message} ({debug})")

    def fail(self, reason: str) -> None:
        print(reason, file=sys.stderr, flush=True)
        self.status = 1
        GLib.idle_add(self.finish)

    def finish(self) -> bool:
        self.delete()
        self.loop.quit()
        return False

    def run(self) -> int:
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, self.finish)
        GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_HUP | GLib.IO_IN, self.on_stdin)
        GLib.timeout_add_seconds(self.args.timeout, self.on_timeout)
        self.pipeline.set_state(Gst.State.PLAYING)
        self.loop.run()
        self.pipeline.set_state(Gst.State.NULL)
        say("done")
        return self.status

    def on_stdin(self, fd: int, _condition: object) -> bool:
        if not sys.stdin.readline():  # EOF: the test is done with us
            GLib.idle_add(self.finish)
            return False
        return True

    def on_timeout(self) -> bool:
        self.fail(f"timed out after {self.args.timeout}s ({self.decoded} frames decoded)")
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["publish", "play"])
    parser.add_argument("url", help="the WHIP or WHEP endpoint")
    parser.add_argument("token", help="bearer token")
    parser.add_argument("--codec", choices=sorted(VIDEO), default="vp8")
    parser.add_argument(
        "--frames", type=int, default=0, help="play: exit once this many are decoded"
    )
    parser.add_argument("--no-audio", action="store_true")
    parser.add_argument("--local-ip", action="append", default=[], help="extra ICE host address")
    parser.add_argument("--setup", choices=["active", "passive"], help="offer this DTLS role")
    parser.add_argument("--timeout", type=int, default=60)
    args = parser.parse_args()
    Gst.init(None)
    return Peer(args).run()


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: finalizing GStreamer's threads from Python's exit path can
    # hang after the pipeline is already NULL (seen on a loaded machine).
    os._exit(status)

"""LL-HLS playlists (RFC 8216bis with the Low-Latency extensions) rendered from a packager's window.

One muxed media playlist (H.264 + Opus in the same CMAF fragments) and a multivariant playlist
naming it. Rendered once per change of the window and shared by every request for that version.
"""

from __future__ import annotations

import datetime

from .packager import HlsPackager

VERSION = 9  # EXT-X-PART / PRELOAD-HINT / SERVER-CONTROL (RFC 8216bis §4.4.3.7–§4.4.5.3)


def _date(unix: float) -> str:
    moment = datetime.datetime.fromtimestamp(unix, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def media_playlist(packager: HlsPackager) -> str:
    """The media playlist: complete segments, the live edge's parts, and a preload hint."""
    config = packager.config
    segments = packager.segments
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{config.target_duration_s}",
        f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={config.part_hold_back_s:.3f}",
        f"#EXT-X-PART-INF:PART-TARGET={config.part_target_s:.3f}",
        f"#EXT-X-MEDIA-SEQUENCE:{segments[0].msn if segments else packager.next_msn}",
        # discontinuities before the first listed segment, its own included (§4.4.3.3)
        "#EXT-X-DISCONTINUITY-SEQUENCE:"
        f"{packager.discontinuity_sequence + int(bool(segments) and segments[0].discontinuity)}",
    ]
    listed_from = len(segments) - config.parts_listed_segments - 1
    init = None
    for i, segment in enumerate(segments):
        if segment.discontinuity and i > 0:
            lines.append("#EXT-X-DISCONTINUITY")
        if segment.init != init:
            init = segment.init
            lines.append(f'#EXT-X-MAP:URI="init{init}.mp4"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(segment.program_time)}")
        if i >= listed_from:
            for part in segment.parts:
                independent = ",INDEPENDENT=YES" if part.independent else ""
                lines.append(
                    f'#EXT-X-PART:DURATION={part.duration:.5f},URI="p{part.number}.m4s"{independent}'
                )
        if segment.complete:
            lines.append(f"#EXTINF:{segment.duration:.5f},")
            lines.append(f"{segment.msn}.m4s")
    if packager.closed:
        lines.append("#EXT-X-ENDLIST")
    elif segments:
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p{packager.next_part}.m4s"')
    return "\n".join(lines) + "\n"


def multivariant_playlist(packager: HlsPackager, media_uri: str) -> str:
    """One variant: the muxed stream as published (passthrough, so no ladder)."""
    width, height = packager.resolution
    attributes = [f"BANDWIDTH={max(packager.bandwidth, 100_000)}", f'CODECS="{packager.codecs}"']
    if width and height:
        attributes.append(f"RESOLUTION={width}x{height}")
    return "\n".join(
        [
            "#EXTM3U",
            f"#EXT-X-VERSION:{VERSION}",
            "#EXT-X-STREAM-INF:" + ",".join(attributes),
            media_uri,
            "",
        ]
    )

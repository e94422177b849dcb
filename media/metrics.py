"""Prometheus metrics of the media relay (module level, ``liveshop_media_*``).

Hot paths count into plain ints; consumers and producers publish deltas here about once
a second, so a forwarded packet never touches a prometheus object.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PACKETS_RECEIVED = Counter(
    "liveshop_media_packets_received_total",
    "RTP packets received from publishers",
    ["show", "kind"],
)
PACKETS_SENT = Counter(
    "liveshop_media_packets_sent_total", "RTP packets sent to viewers", ["show", "kind"]
)
BYTES_SENT = Counter(
    "liveshop_media_bytes_sent_total", "RTP payload bytes sent to viewers", ["show", "kind"]
)
NACKS_RECEIVED = Counter(
    "liveshop_media_nacks_received_total", "sequence numbers NACKed by viewers", ["show"]
)
RETRANSMITS = Counter(
    "liveshop_media_retransmits_total", "packets resent from the packet history", ["show"]
)
PLI_RECEIVED = Counter("liveshop_media_pli_received_total", "PLI/FIR from viewers", ["show"])
PLI_SENT = Counter("liveshop_media_pli_sent_total", "PLI sent to publishers", ["show"])
PLI_THROTTLED = Counter(
    "liveshop_media_pli_throttled_total", "PLI requests swallowed by the 1/s throttle", ["show"]
)
GOP_JOINS = Counter(
    "liveshop_media_gop_joins_total", "viewers started from the cached keyframe", ["show"]
)
VIEWERS = Gauge("liveshop_media_viewers", "connected viewers", ["show"])
PUBLISHERS = Gauge("liveshop_media_publishers", "live publishers", ["show"])
VIEWER_RTT = Gauge(
    "liveshop_media_viewer_rtt_seconds",
    "RTT from viewer receiver reports",
    ["show", "viewer", "kind"],
)
VIEWER_LOSS = Gauge(
    "liveshop_media_viewer_fraction_lost",
    "fraction lost from viewer receiver reports",
    ["show", "viewer", "kind"],
)
VIEWER_PACKETS = Gauge(
    "liveshop_media_viewer_packets_sent",
    "RTP packets sent to one viewer",
    ["show", "viewer", "kind"],
)
VIEWER_REMB = Gauge(
    "liveshop_media_viewer_remb_bps", "REMB estimate of one viewer", ["show", "viewer"]
)
FORWARD_LATENCY = Histogram(
    "liveshop_media_forward_latency_seconds",
    "time from an RTP packet's arrival to the last viewer copy sent (sampled)",
    ["show"],
    buckets=(25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3),
)

# Origin → edge pipes (issue 11): per process, so per node when summed over a node's processes.
PIPES = Gauge(
    "liveshop_media_pipes",
    "open pipes: out = this origin feeding an edge, in = an edge here fed by an origin",
    ["direction"],
)
EDGES = Gauge("liveshop_media_edges", "shows served here as an edge of another process")
PIPE_PACKETS = Counter(
    "liveshop_media_pipe_packets_total",
    "pipe datagrams sent (out) and received (in)",
    ["direction"],
)
PIPE_DROPPED = Counter(
    "liveshop_media_pipe_dropped_total",
    "pipe datagrams dropped: auth (bad tag), stranger (not from the origin), malformed, "
    "not_origin (a join for a show not live here with that epoch)",
    ["reason"],
)


def forget_viewer(show: str, viewer: str, kinds: tuple[str, ...] = ("video", "audio")) -> None:
    """Drop a departed viewer's labelled series (keeps /metrics bounded)."""
    for kind in kinds:
        for gauge in (VIEWER_RTT, VIEWER_LOSS, VIEWER_PACKETS):
            try:
                gauge.remove(show, viewer, kind)
            except KeyError:
                pass
    try:
        VIEWER_REMB.remove(show, viewer)
    except KeyError:
        pass

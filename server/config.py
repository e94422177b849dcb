"""Settings: one dataclass, filled from command-line flags and ``LIVESHOP_*`` environment variables.

A flag wins over its environment variable, which wins over the default.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class Settings:
    """Everything the service can be told. Every field is also ``LIVESHOP_<FIELD>`` in the environment."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=8080, metadata={"help": "HTTP/WebSocket port"})
    redis_url: str = field(
        default="",
        metadata={
            "help": "Redis to use (redis://, rediss://, unix://, redis+cluster://); "
            "empty starts a private embedded Redis in the data dir"
        },
    )
    redis_cluster: bool = field(
        default=False, metadata={"help": "treat --redis-url as Redis Cluster"}
    )
    data_dir: Path = field(
        default=Path("./data"), metadata={"help": "where Redis, the secret and recordings live"}
    )
    secret: str = field(
        default="",
        metadata={"help": "token signing key (generated and kept in the data dir when absent)"},
    )
    demo: bool = field(default=False, metadata={"help": "create a demo show and print its URLs"})
    log_json: bool = field(default=False, metadata={"help": "one JSON object per log line"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING, ERROR"})
    public_url: str = field(
        default="", metadata={"help": "base URL printed in links (default http://HOST:PORT)"}
    )
    reuse_port: bool = field(
        default=False,
        metadata={"help": "SO_REUSEPORT: several processes share one port (needs --redis-url)"},
    )
    guest_per_minute: int = field(
        default=30, metadata={"help": "guest tokens per client IP per minute"}
    )
    # Real-time layer.
    chat_max_chars: int = field(default=200, metadata={"help": "longest danmaku accepted"})
    chat_rate: float = field(
        default=1.0, metadata={"help": "danmaku per second per viewer (token bucket rate)"}
    )
    chat_burst: int = field(default=3, metadata={"help": "token bucket burst for danmaku"})
    chat_history: int = field(
        default=1000, metadata={"help": "danmaku kept per show for reconnect recovery"}
    )
    banned_words: list[str] = field(
        default_factory=list, metadata={"help": "extra banned words, comma separated"}
    )
    batch_ms: int = field(default=50, metadata={"help": "fan-out batching window in ms"})
    batch_max_ms: int = field(
        default=100,
        metadata={"help": "longest the batching window may grow to when fan-out gets expensive"},
    )
    # Commerce.
    reservation_ttl_s: int = field(
        default=300, metadata={"help": "how long a flash-sale reservation is held"}
    )
    payment_latency_ms: int = field(
        default=50, metadata={"help": "simulated payment provider latency"}
    )
    payment_failure_rate: float = field(
        default=0.0, metadata={"help": "simulated payment failure rate 0..1"}
    )
    # Interactive commerce (issue 18): the flash sale's sold-out short-circuit on the node.
    soldout_short_circuit: bool = field(
        default=True,
        metadata={"help": "answer attempts on a sold-out sale on the node, without Redis"},
    )
    # Media.
    ice_addresses: list[str] = field(
        default_factory=list,
        metadata={"help": "ICE host addresses to gather, comma separated (default: host)"},
    )
    announced_address: str = field(
        default="", metadata={"help": "public address announced in ICE candidates"}
    )
    ice_servers: list[str] = field(
        default_factory=list, metadata={"help": "STUN/TURN URLs handed to clients, comma separated"}
    )
    udp_port_min: int = field(default=0, metadata={"help": "lowest UDP port for media (0: any)"})
    udp_port_max: int = field(default=0, metadata={"help": "highest UDP port for media (0: any)"})
    gc_thaw_s: float = field(
        default=600,
        metadata={
            "help": "freeze the survivors of each full garbage collection and reclaim them every "
            "this many seconds, so full collections do not stall a node with many viewers "
            "(0: Python's default collector)"
        },
    )
    media_workers: int = field(
        default=0,
        metadata={
            "help": "worker processes serving viewers, fed from this process's publishers "
            "(0: this process serves them)"
        },
    )
    # demo (issue 17): --demo starts the demo show fresh each run unless told to keep it
    demo_keep: bool = field(
        default=False, metadata={"help": "with --demo: keep the demo show as the last run left it"}
    )
    # Media at scale: origin directory, pipes between processes and nodes, placement (issue 11).
    node_id: str = field(
        default="",
        metadata={"help": "this node's name in the origin directory (default: the host name)"},
    )
    pipe_address: str = field(
        default="",
        metadata={
            "help": "address pipe sockets bind to, where other nodes' edges reach this one "
            "(default: --host, or 0.0.0.0 when --host is a wildcard)"
        },
    )
    pipe_announced_address: str = field(
        default="",
        metadata={
            "help": "pipe address written to the origin directory, for nodes behind NAT "
            "(default: --pipe-address, else the first --ice-addresses, else 127.0.0.1)"
        },
    )
    pipe_port_min: int = field(default=0, metadata={"help": "lowest UDP port for pipes (0: any)"})
    pipe_port_max: int = field(default=0, metadata={"help": "highest UDP port for pipes (0: any)"})
    media_node_max_viewers: int = field(
        default=0,
        metadata={
            "help": "viewers this node serves before WHEP answers 307 to another node "
            "(503 + Retry-After when none has room; 0: no ceiling)"
        },
    )
    media_node_max_cpu: float = field(
        default=0.0,
        metadata={
            "help": "CPU share of one core per process (0..1, averaged over the node's processes "
            "and media workers) at which WHEP answers 307 to another node (0: no ceiling)"
        },
    )

    # Operator trust (issue 14): API keys, TLS, per-IP limits.
    api_key: list[str] = field(
        default_factory=list,
        metadata={
            "help": "operator API keys as ID:SECRET, comma separated (several for rotation); "
            "generated into the data dir and printed once when absent"
        },
    )
    tls_cert: str = field(default="", metadata={"help": "PEM certificate chain: serve HTTPS/WSS"})
    tls_key: str = field(default="", metadata={"help": "PEM private key of --tls-cert"})
    trusted_proxies: list[str] = field(
        default_factory=list,
        metadata={
            "help": "addresses of reverse proxies whose X-Forwarded-For names the client "
            "(comma separated IPs or CIDRs)"
        },
    )
    ws_connects_per_ip: float = field(
        default=5.0, metadata={"help": "WebSocket connects per second per client IP (0: no limit)"}
    )
    ws_connect_burst: int = field(
        default=60, metadata={"help": "WebSocket connects a client IP may make at once"}
    )
    ws_max_per_ip: int = field(
        default=500,
        metadata={"help": "open WebSocket connections per client IP on one node (0: no limit)"},
    )
    http_anon_per_ip: float = field(
        default=20.0,
        metadata={"help": "unauthenticated HTTP requests per second per client IP (0: no limit)"},
    )
    http_anon_burst: int = field(
        default=200, metadata={"help": "unauthenticated HTTP requests a client IP may burst"}
    )

    # Low-Latency HLS (media/hls, server/hls_api.py).
    hls: bool = field(default=True, metadata={"help": "package live H.264 shows as LL-HLS"})
    hls_segment_s: float = field(default=2.0, metadata={"help": "HLS segment length, seconds"})
    hls_part_s: float = field(
        default=0.25, metadata={"help": "HLS partial segment length, seconds"}
    )

    # PK battles between two live shows (server/realtime/pk.py, issue 20).
    pk_duration_s: int = field(default=180, metadata={"help": "default PK battle length, s"})
    pk_invite_ttl_s: int = field(default=120, metadata={"help": "how long a PK invite is valid, s"})
    pk_like_points: int = field(default=1, metadata={"help": "PK points per like"})
    pk_gmv_points: int = field(
        default=1, metadata={"help": "PK points per 1.00 of paid orders (currency units)"}
    )
    # Host insight: dwell time, interaction rate, funnel, report (server/insight).
    insight_reconnect_grace_s: float = field(
        default=30.0,
        metadata={"help": "a viewer back within this many seconds continues the same session"},
    )
    insight_ttl_s: int = field(
        default=7 * 86400, metadata={"help": "keep a show's insight keys this long after activity"}
    )
    alert_viewer_drop: float = field(
        default=0.3, metadata={"help": "alert when viewers fall by this share within the window"}
    )
    alert_viewer_window_s: float = field(default=60.0, metadata={"help": "viewer-drop window, s"})
    alert_viewer_min: int = field(
        default=10, metadata={"help": "no viewer-drop alert below this many viewers"}
    )
    alert_payment_failures: int = field(
        default=5, metadata={"help": "alert at this many failed payments within ~a minute"}
    )
    alert_chat_per_minute: float = field(
        default=600.0, metadata={"help": "alert when chat reaches this many messages per minute"}
    )
    alert_buys_per_ip: int = field(
        default=10,
        metadata={"help": "alert when one address reserves this many units in ~a minute"},
    )
    alert_sold_out_s: float = field(
        default=30.0, metadata={"help": "alert when a sale sells out within this many seconds"}
    )

    # Alerts: stream stall/bitrate, banned-word burst, new-account buying (issue 19, s3-19a).
    alert_stall_s: float = field(
        default=3.0, metadata={"help": "alert when the publisher sends no packets this long, s"}
    )
    alert_bitrate_ratio: float = field(
        default=0.25,
        metadata={"help": "alert when ingest bitrate falls below this share of its median"},
    )
    alert_bitrate_s: float = field(
        default=5.0, metadata={"help": "bitrate alert: how long the bitrate must stay low, s"}
    )
    alert_bitrate_window_s: float = field(
        default=60.0, metadata={"help": "bitrate alert: the median is over this long before, s"}
    )
    alert_bitrate_baseline_min_s: float = field(
        default=10.0, metadata={"help": "bitrate alert: least seconds of history to judge by"}
    )
    alert_banned_words: int = field(
        default=10, metadata={"help": "alert at this many danmaku rejected for banned words"}
    )
    alert_banned_words_window_s: float = field(
        default=60.0, metadata={"help": "banned-word alert window, s"}
    )
    alert_new_account_buys: int = field(
        default=10,
        metadata={"help": "alert at this many units reserved by just-created guest accounts"},
    )
    alert_new_account_age_s: float = field(
        default=60.0, metadata={"help": "a guest account younger than this at its buy is new, s"}
    )
    alert_new_account_window_s: float = field(
        default=60.0, metadata={"help": "new-account buying alert window, s"}
    )

    # Shoppable replay: when a recording becomes public, how much of its timeline is kept (server/insight/replay.py).
    replay_auto_publish: bool = field(
        default=True,
        metadata={
            "help": "a finished recording is a public replay at once (else the host publishes it)"
        },
    )
    replay_max_events: int = field(
        default=20000,
        metadata={"help": "timeline events kept per recording (danmaku, pins, sales)"},
    )

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"{self.scheme}://{self.host}:{self.port}"


def _convert(kind: Any, raw: str) -> Any:
    if kind in (bool, "bool"):
        return _bool(raw)
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    if kind in (Path, "Path"):
        return Path(raw)
    if kind in ("list[str]",):
        return _csv(raw)
    return raw


def _default_text(value: Any) -> str:
    """``default: …`` for --help (argparse would not show it; ``%`` escaped for its formatter)."""
    if isinstance(value, bool):
        text = "on" if value else "off"
    elif isinstance(value, list):
        text = ",".join(map(str, value)) or "none"
    elif value == "":
        text = "none"
    else:
        text = str(value)
    return "default: " + text.replace("%", "%%")


def parse_settings(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Build Settings from flags (argv) over environment (env) over defaults."""
    env = dict(os.environ) if env is None else env
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="liveshop", description="liveshop live-commerce streaming server"
    )
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        env_name = "LIVESHOP_" + f.name.upper()
        default = getattr(defaults, f.name)
        if env_name in env:
            default = _convert(f.type, env[env_name])
        help_text = f"{f.metadata.get('help', '')} ({_default_text('(set)' if f.name == 'secret' and default else default)}; env {env_name})"
        if f.type in (bool, "bool"):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        else:
            parser.add_argument(
                flag,
                default=default,
                type=lambda raw, kind=f.type: _convert(kind, raw),
                help=help_text,
            )
    namespace = parser.parse_args(argv)
    return Settings(**vars(namespace))

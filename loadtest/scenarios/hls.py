"""``hls``: one synthetic H.264 publisher and N LL-HLS clients polling with blocking reload.

Each client does what hls.js does in low-latency mode, over the public HTTP API only: the
multivariant playlist with its viewer token, then a loop of blocking media-playlist reloads for
the next part (``_HLS_msn``/``_HLS_part``), fetching every new part (``--playlist-only`` skips
that). Its distance from the live edge is measured at every reload as the wall-clock age of the
newest part in the playlist it got (``EXT-X-PROGRAM-DATE-TIME`` plus the part durations): the
report's ``latency_ms``. The tester and the server must share a clock (same machine, or NTP).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlparse

from ..client import ApiError
from ..invariants import check
from .base import GO, WorkerEnv
from .common import count_error, mint_with_retry
from .media import MediaScenario, _percentile

if TYPE_CHECKING:
    from ..runner import Aggregate, Controller


class LivePlaylist:
    """What a client needs from a media playlist: its newest part, and when it ended (wall clock)."""

    def __init__(self, text: str) -> None:
        self.part_target = 0.0
        self.last: tuple[int, int] = (-1, -1)  # (media sequence number, part index)
        self.edge_wall = 0.0
        self.parts: list[str] = []
        msn, index, wall = 0, 0, 0.0
        for line in text.splitlines():
            if line.startswith("#EXT-X-PART:"):
                attrs = dict(kv.split("=", 1) for kv in line[12:].split(","))
                wall += float(attrs["DURATION"])
                self.last, self.edge_wall = (msn, index), wall
                self.parts.append(attrs["URI"].strip('"'))
                index += 1
            elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
                wall = datetime.datetime.fromisoformat(line[25:].replace("Z", "+00:00")).timestamp()
            elif line.startswith("#EXTINF:"):
                msn, index = msn + 1, 0
            elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
                msn = int(line[22:])
            elif line.startswith("#EXT-X-PART-INF:PART-TARGET="):
                self.part_target = float(line[28:])


class LeanHttp:
    """One keep-alive HTTP/1.1 connection doing one GET at a time, as a player does.

    aiohttp's client cost the tester about twice what the server spends per request (a task,
    a response object and header multidict per GET); a thousand players reloading four times a
    second measured the tester. This reads the status line, ``Content-Length`` and the body,
    and reconnects when the server closes.
    """

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.authority = parsed.netloc.encode()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def connect(self) -> None:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)

    async def get(self, target: str) -> tuple[int, bytes]:
        async with asyncio.timeout(15.0):  # longer than any blocking reload (6 s)
            for attempt in (0, 1):
                await self.connect()
                assert self.streams is not None
                reader, writer = self.streams
                try:
                    writer.write(
                        b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), self.authority)
                    )
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head[9:12])
                    if b"transfer-encoding: chunked" in head.lower():
                        raise ValueError("a chunked answer: liveshop sends Content-Length")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    body = await reader.readexactly(length)
                    if b"connection: close" in head.lower():
                        self.close()
                    return status, body
                except (ConnectionError, asyncio.IncompleteReadError):
                    self.close()
                    if attempt:
                        raise
                except BaseException:  # a timeout mid-response: the connection is unusable
                    self.close()
                    raise
        raise ConnectionError("unreachable")

    async def text(self, target: str) -> str:
        """A 200 answer's body as text; anything else raises :class:`ApiError` with its code."""
        status, body = await self.get(target)
        if status != 200:
            raise ApiError(status, _json(body))
        return body.decode()

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


class HlsScenario(MediaScenario):
    name = "hls"
    help = "LL-HLS: a synthetic H.264 publisher and --clients players polling with blocking reload"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--clients", type=int, default=1000, help="LL-HLS players")
        parser.add_argument(
            "--playlist-only", action="store_true", help="reload playlists but fetch no parts"
        )
        parser.add_argument("--width", type=int, default=640)
        parser.add_argument("--height", type=int, default=360)
        parser.add_argument("--fps", type=int, default=30)
        parser.add_argument("--bitrate", type=int, default=800_000, help="publisher bitrate")
        parser.add_argument(
            "--preencode", type=float, default=4.0, help="seconds encoded once and looped"
        )
        parser.set_defaults(codec="h264", viewers=0)

    async def control(self, ctl: Controller, plan: dict[str, Any]) -> None:
        a = self.args
        await ctl.wait_counter(
            "joined", a["clients"], limit_s=a["clients"] / max(a["ramp"], 1) + 60
        )
        await asyncio.sleep(1.0)
        ctl.phase = "watching"
        ctl.set_flag(GO, time.monotonic())

    async def run_worker(self, plan: dict[str, Any], env: WorkerEnv) -> None:
        results = await asyncio.gather(
            *(self._client(plan, env, i) for i in env.share(self.args["clients"]))
        )
        env.stats.extra["per_client"] = [r for r in results if r is not None]

    async def _client(self, plan: dict[str, Any], env: WorkerEnv, i: int) -> dict[str, Any] | None:
        show_id = plan["show_id"]
        await env.sleep_until(env.t0 + i / max(self.args["ramp"], 0.001))
        env.stats.add("clients")
        try:
            token, _ = await mint_with_retry(env, show_id, plan["host_token"], "viewer", f"HLS {i}")
            # one connection per player for everything after the token (as a browser would):
            # opened during the ramp, not by a thousand players at the window's start
            http = LeanHttp(env.url)
            index = await http.text(f"/hls/{show_id}/index.m3u8?" + urlencode({"token": token}))
            path = f"/hls/{show_id}/" + index.strip().splitlines()[-1]
            playlist = LivePlaylist(await http.text(path))
        except Exception as exc:
            count_error(env, "join", exc, connect=True, final=True)
            env.stats.add("joined")
            return None
        env.stats.gauges["connected"] = env.stats.gauges.get("connected", 0) + 1
        env.stats.add("joined")
        base = path.rsplit("/", 1)[0] + "/"
        lags: list[float] = []
        late = reloads = 0
        go = await env.wait_flag(GO)
        try:  # a player starts at the live edge: what is listed now is history, not fetched
            playlist = LivePlaylist(await http.text(path))
        except Exception as exc:
            count_error(env, "start", exc, final=True)
            http.close()
            return None
        seen = set(playlist.parts)
        end = go + float(self.args["duration"])
        while time.monotonic() < end and not env.stopping:
            msn, part = playlist.last
            query = urlencode({"_HLS_msn": msn, "_HLS_part": part + 1})
            try:
                text = await http.text(f"{path}?{query}")
            except Exception as exc:
                count_error(env, "reload", exc)
                await asyncio.sleep(0.2)  # a failing server: do not spin on it
                continue
            arrived = time.time()
            playlist = LivePlaylist(text)
            reloads += 1
            env.stats.add("received")
            lag = max(0.0, arrived - playlist.edge_wall)
            lags.append(lag)
            env.stats.latency_us(lag * 1e6)
            if lag > playlist.part_target:
                late += 1
            if not self.args["playlist_only"]:
                for uri in playlist.parts:
                    if uri not in seen:
                        seen.add(uri)
                        try:
                            status, body = await http.get(base + uri)
                            if status != 200:
                                raise ApiError(status, _json(body))
                            env.stats.add("part_bytes", len(body))
                            env.stats.add("parts")
                        except Exception as exc:
                            count_error(env, "part", exc)
                seen &= set(playlist.parts)
        http.close()
        return {
            "reloads": reloads,
            "late": late,
            "lag_p50_ms": _percentile([x * 1000 for x in lags], 50),
            "lag_p99_ms": _percentile([x * 1000 for x in lags], 99),
            "lag_max_ms": round(max(lags, default=0.0) * 1000, 1),
            "part_target_ms": round(playlist.part_target * 1000, 1),
        }

    async def finish(self, ctl: Controller, plan: dict[str, Any], agg: Aggregate) -> dict[str, Any]:
        per_client = [c for extra in agg.extras for c in extra.get("per_client", [])]
        target = max((c["part_target_ms"] for c in per_client), default=0.0)
        within = [c for c in per_client if c["reloads"] > 0 and (c["lag_p99_ms"] or 0) <= target]
        duration = float(self.args["duration"])
        reloads = sum(c["reloads"] for c in per_client)
        hls = {
            "clients": len(per_client),
            "clients_within_one_part": len(within),
            "part_target_ms": target,
            "reloads": reloads,
            "reloads_per_client_s": round(reloads / max(len(per_client), 1) / duration, 2),
            "late_reloads": sum(c["late"] for c in per_client),
            "parts_fetched": int(agg.counters.get("parts", 0)),
            "part_mbytes": round(agg.counters.get("part_bytes", 0) / 1e6, 2),
            "worst_client_lag_p99_ms": max(
                (c["lag_p99_ms"] or 0 for c in per_client), default=None
            ),
            "worst_client_lag_max_ms": max((c["lag_max_ms"] for c in per_client), default=None),
            "viewer_seconds": round(len(per_client) * duration, 1),
        }
        return {
            "hls": hls,
            "invariants": {
                "hls_clients_within_one_part": check(
                    len(per_client) > 0 and len(within) == len(per_client),
                    f"{len(within)} of {len(per_client)} clients stayed within one part "
                    f"({target} ms) of the live edge (each client's p99 over "
                    f"{reloads} blocking reloads)",
                ),
            },
        }


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")

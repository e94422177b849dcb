"""``python -m server --media-workers 2``: viewers served by worker processes fed from the origin.

Real server processes, a real aiortc publisher and decoding aiortc viewers over WHIP/WHEP.
"""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from pathlib import Path

import aiohttp

from media.aiortc_internals import configure_ice
from media.publish import Publisher, PublishOptions

from ..conftest import API_KEY, ServerProcess, http_json
from .peers import TestViewer, ended_by_peer, wait_until

SMALL = PublishOptions(codec="vp8", width=320, height=240, fps=30, bitrate=400_000)


class WhepViewer(TestViewer):
    """A decoding aiortc viewer that joins over HTTP (WHEP)."""

    __test__ = False
    location = ""
    node = ""  # the Liveshop-Node header: which process of which node serves this viewer

    async def join_http(self, base: str, show_id: str, token: str) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{base}/whep/{show_id}",
                data=await self.offer(),
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            body = await resp.text()
            assert resp.status == 201, body
            self.location = resp.headers["Location"]
            self.node = resp.headers.get("Liveshop-Node", "")
        await self.answer(body)

    @property
    def worker(self) -> str:
        """``w0`` / ``w1`` from ``/whep/{show}/w0.{session}``."""
        return self.location.rsplit("/", 1)[1].split(".", 1)[0]


async def _delete(base: str, location: str, token: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.delete(base + location, headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        return resp.status


def _metric(base: str, name: str) -> dict[str, float]:
    """``{'worker="0",show="x"': value}`` for every sample of ``name`` at /metrics."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M)
    }


def _viewers_per_worker(base: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in _metric(base, "liveshop_media_worker_viewers").items():
        worker = re.search(r'worker="(\d+)"', labels).group(1)  # type: ignore[union-attr]
        out[worker] = out.get(worker, 0) + value
    return out


def _worker_pids(base: str) -> dict[str, int]:
    return {
        re.search(r'worker="(\d+)"', k).group(1): int(v)  # type: ignore[union-attr]
        for k, v in _metric(base, "liveshop_media_worker_pid").items()
    }


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _show(base: str) -> tuple[str, str]:
    status, body = http_json(base + "/api/shows", "POST", {"title": "workers"}, API_KEY)
    assert status == 201, body
    return body["show"]["id"], body["host_token"]


def _guest(base: str, show_id: str) -> str:
    status, body = http_json(f"{base}/api/shows/{show_id}/guest", "POST", {})
    assert status == 201, body
    return str(body["token"])


async def test_viewers_spread_over_workers_and_end_with_the_broadcast(server_proc) -> None:
    configure_ice(["127.0.0.1"])
    server: ServerProcess = server_proc("--media-workers", "2")
    base = server.url
    assert set(_worker_pids(base)) == {"0", "1"}
    show_id, host_token = _show(base)
    publisher = Publisher(base, show_id, host_token, SMALL)
    replacement = Publisher(base, show_id, host_token, SMALL)
    viewers = [WhepViewer() for _ in range(3)]
    tokens = [_guest(base, show_id) for _ in viewers]
    try:
        await publisher.start()
        for viewer, token in zip(viewers, tokens, strict=True):
            await viewer.join_http(base, show_id, token)
        # Least-loaded placement: both workers serve, the third viewer goes to either.
        assert {v.worker for v in viewers} == {"w0", "w1"}
        assert await wait_until(lambda: all(len(v.frames) >= 10 for v in viewers), 20), [
            len(v.frames) for v in viewers
        ]
        assert await wait_until(lambda: all(v.audio_frames > 0 for v in viewers), 5)
        assert all(set(v.frames) == {(320, 240)} for v in viewers)
        assert sorted(_viewers_per_worker(base).values()) == [1, 2]
        assert (
            await wait_until(  # the workers' own series, relabelled (reported about once a second)
                lambda: (
                    set(_metric(base, "liveshop_media_worker_packets_sent_total"))
                    >= {f'kind="video",show="{show_id}",worker="{w}"' for w in "01"}
                ),
                5,
            )
        )

        # The origin records while workers serve.
        status, _ = http_json(f"{base}/api/shows/{show_id}/recordings", "POST", {}, host_token)
        assert status == 201

        def recorded() -> bool:  # the origin's file has media in it
            _, listing = http_json(f"{base}/api/shows/{show_id}/recordings", token=host_token)
            return any(r["recording"] and r["bytes"] > 0 for r in listing["recordings"])

        assert await wait_until(recorded, 10)
        status, body = http_json(
            f"{base}/api/shows/{show_id}/recordings/stop", "POST", {}, host_token
        )
        assert status == 200 and body["recording"]["bytes"] > 0, body

        # DELETE frees the viewer on its worker; a second DELETE finds nothing.
        leaving = viewers.pop()
        before = _viewers_per_worker(base)[leaving.worker[1:]]
        assert await _delete(base, leaving.location, tokens.pop()) == 200
        assert await wait_until(
            lambda: _viewers_per_worker(base).get(leaving.worker[1:], 0) == before - 1, 5
        )
        assert await wait_until(lambda: ended_by_peer(leaving.pc), 10)
        assert await _delete(base, leaving.location, tokens[0]) == 404
        await leaving.close()

        # A replacement publisher reaches the workers' viewers through the same pipes.
        await replacement.start(replace=True)
        counts = [len(v.frames) for v in viewers]
        assert await wait_until(
            lambda: all(len(v.frames) >= c + 30 for v, c in zip(viewers, counts, strict=True)), 20
        )

        # The broadcast ends at the origin: every worker's viewers are ended too.
        await replacement.stop()
        assert await wait_until(lambda: all(ended_by_peer(v.pc) for v in viewers), 15)
        assert await wait_until(lambda: sum(_viewers_per_worker(base).values()) == 0, 5)
        assert http_json(f"{base}/api/shows/{show_id}")[1]["show"]["status"] == "ended"
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.stop()
        await replacement.stop()


async def test_a_killed_worker_loses_only_its_viewers(server_proc) -> None:
    configure_ice(["127.0.0.1"])
    server: ServerProcess = server_proc("--media-workers", "2")
    base = server.url
    show_id, host_token = _show(base)
    publisher = Publisher(base, show_id, host_token, SMALL)
    viewers: list[WhepViewer] = []
    try:
        await publisher.start()
        for _ in range(2):
            viewers.append(WhepViewer())
            await viewers[-1].join_http(base, show_id, _guest(base, show_id))
        assert await wait_until(lambda: all(len(v.frames) >= 5 for v in viewers), 20)
        pids = _worker_pids(base)
        victim = next(v for v in viewers if v.worker == "w0")
        survivor = next(v for v in viewers if v.worker == "w1")

        os.kill(pids["0"], signal.SIGKILL)
        # The server serves on; the other worker's viewer keeps decoding.
        frames = len(survivor.frames)
        assert await wait_until(lambda: len(survivor.frames) >= frames + 30, 10)
        assert http_json(base + "/healthz")[0] == 200
        assert victim.worker == "w0"  # its viewer is lost with it; the pool forgets it
        assert await wait_until(lambda: _viewers_per_worker(base).get("0", 0) == 0, 5)
        # New viewers get frames (on the surviving worker, or on worker 0 once restarted).
        late = [WhepViewer(), WhepViewer()]
        viewers += late
        for viewer in late:
            await viewer.join_http(base, show_id, _guest(base, show_id))
        assert await wait_until(lambda: all(len(v.frames) >= 10 for v in late), 20)
        # Worker 0 comes back as a new process.
        assert await wait_until(lambda: _worker_pids(base).get("0", 0) not in (0, pids["0"]), 15)
        assert _metric(base, "liveshop_media_worker_restarts_total")['worker="0"'] == 1
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.stop()

    # SIGTERM stops the server and every worker with it.
    pids = _worker_pids(base)
    assert server.stop(signal.SIGTERM) == 0
    assert await wait_until(lambda: not any(_alive(pid) for pid in pids.values()), 5), pids


async def test_workers_die_with_a_killed_server(server_proc) -> None:
    server: ServerProcess = server_proc("--media-workers", "2")
    pids = _worker_pids(server.url)
    assert len(pids) == 2 and all(_alive(pid) for pid in pids.values())
    server.stop(signal.SIGKILL)
    assert await wait_until(lambda: not any(_alive(pid) for pid in pids.values()), 5), pids

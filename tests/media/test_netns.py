"""Origin → edge across real separate hosts: network namespaces joined by veth pairs.

Each node (``python -m server``) runs in a network namespace of its own with its own address;
the namespaces and this test process (the viewers' and publisher's host) meet on a bridge in
a hub namespace, and one TCP Redis listens on this host's address, reachable from all. Names,
addresses and ports are unique per run; everything is torn down in the finalizer.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import redis

from loadtest.client import create_show
from media.aiortc_internals import configure_ice
from media.pipe import pipe_key, seal
from media.publish import Publisher, PublishOptions
from server import keys
from server.embedded_redis import find_redis_server

from ..conftest import ROOT, http_json
from .peers import wait_until
from .test_workers import WhepViewer, _guest

SECRET = "netns-lab-secret"
HTTP_PORT = 8080  # every node has an address of its own, so all listen on the same port


def _ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    subprocess.run(argv, check=True, capture_output=True)


def _free_subnet() -> str:
    """A 10.a.b.0/24 no interface of this host uses (other runs build labs at the same time)."""
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    while True:
        prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        if f" {prefix}." not in taken:
            return prefix


@dataclass
class Node:
    name: str
    address: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}:{HTTP_PORT}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def metric(self, name: str) -> dict[str, float]:
        text = urllib.request.urlopen(self.url + "/metrics", timeout=10).read().decode()
        return {
            m.group(1) or "": float(m.group(2))
            for m in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M)
        }


@dataclass
class Lab:
    """A hub bridge, this host on it, node namespaces on it, and one Redis."""

    tag: str
    prefix: str
    workdir: Path
    namespaces: list[str] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    redis_proc: subprocess.Popen[bytes] | None = None
    redis_url: str = ""

    @property
    def host_address(self) -> str:
        return f"{self.prefix}.1"

    def build(self, node_names: list[str]) -> None:
        hub = f"lsh{self.tag}"
        _ip("netns", "add", hub)
        self.namespaces.append(hub)
        _ip("link", "add", "br0", "type", "bridge", netns=hub)
        _ip("link", "set", "br0", "up", netns=hub)
        # This host's leg on the bridge (the test's publisher, viewers and Redis).
        _ip("link", "add", f"lsr{self.tag}", "type", "veth", "peer", "name", f"lsq{self.tag}")
        _ip("link", "set", f"lsq{self.tag}", "netns", hub)
        _ip("link", "set", f"lsq{self.tag}", "master", "br0", "up", netns=hub)
        _ip("addr", "add", f"{self.host_address}/24", "dev", f"lsr{self.tag}")
        _ip("link", "set", f"lsr{self.tag}", "up")
        for index, name in enumerate(node_names, start=2):
            ns = self.netns(name)
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            outer, inner = f"ls{name}{self.tag}h", f"ls{name}{self.tag}n"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "netns", hub)
            _ip("link", "set", outer, "master", "br0", "up", netns=hub)
            _ip("link", "set", inner, "netns", ns)
            _ip("addr", "add", f"{self.prefix}.{index}/24", "dev", inner, netns=ns)
            _ip("link", "set", inner, "up", netns=ns)
            _ip("link", "set", "lo", "up", netns=ns)

    def netns(self, name: str) -> str:
        return f"ls{name}{self.tag}"

    def start_redis(self) -> None:
        with socket.socket() as probe:
            probe.bind((self.host_address, 0))
            port = probe.getsockname()[1]
        self.redis_proc = subprocess.Popen(
            [find_redis_server(), "--bind", self.host_address, "--port", str(port)]
            + ["--protected-mode", "no", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.redis_url = f"redis://{self.host_address}:{port}/0"
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def start_nodes(self, names: list[str]) -> list[Node]:
        """Start the nodes at once (each in its namespace), then wait until all are healthy."""
        started = []
        for name in names:
            index = 2 + "ABC".index(name)
            address = f"{self.prefix}.{index}"
            data = self.workdir / f"data-{name}-{secrets.token_hex(3)}"
            data.mkdir(parents=True)
            log_path = data.with_suffix(".log")
            argv = ["ip", "netns", "exec", self.netns(name), sys.executable, "-m", "server"]
            argv += ["--host", address, "--port", str(HTTP_PORT), "--data-dir", str(data)]
            argv += ["--ice-addresses", address, "--redis-url", self.redis_url]
            argv += ["--secret", SECRET, "--node-id", name, "--guest-per-minute", "100000"]
            with open(log_path, "wb") as out:
                proc = subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            node = Node(name, address, proc, log_path)
            self.nodes.append(node)
            started.append(node)
        deadline = time.monotonic() + 60
        for node in started:
            while True:
                if node.proc.poll() is not None:
                    raise RuntimeError(f"node {node.name} exited:\n{node.log()}")
                try:
                    if http_json(node.url + "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {node.name} not healthy:\n{node.log()}")
                time.sleep(0.1)
        return started

    def teardown(self) -> None:
        for node in self.nodes:
            node.kill()
        if self.redis_proc is not None:
            self.redis_proc.kill()
            self.redis_proc.wait()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    tag = f"{os.getpid() % 1000:03d}{secrets.token_hex(1)}"
    lab = Lab(tag, _free_subnet(), tmp_path)
    try:
        lab.build(["A", "B", "C"])
        lab.start_redis()
        configure_ice([lab.host_address])
        yield lab
    finally:
        lab.teardown()
        configure_ice(["127.0.0.1"])  # process wide: later tests must not gather on our bridge


async def _watch(node: Node, show_id: str) -> WhepViewer:
    viewer = WhepViewer()
    await viewer.join_http(node.url, show_id, _guest(node.url, show_id))
    assert viewer.node.startswith(f"{node.name}:"), viewer.node  # served by that node itself
    return viewer


def _origin(lab: Lab, show_id: str) -> dict[str, str]:
    client = redis.Redis.from_url(lab.redis_url, decode_responses=True)
    try:
        return client.hgetall(keys.media_origin(show_id))
    finally:
        client.close()


async def test_edges_on_other_hosts_serve_join_instantly_and_survive_each_other(lab: Lab) -> None:
    a, b, c = lab.start_nodes(["A", "B", "C"])
    async with aiohttp.ClientSession() as http:
        show_id, host_token = await create_show(http, a.url, "netns vp8")
    # keyint 10 s: no keyframe of its own during the test, so joins must use the GOP cache.
    options = PublishOptions(
        codec="vp8", width=320, height=240, fps=30, bitrate=400_000, keyint_s=10.0
    )
    publisher = Publisher(a.url, show_id, host_token, options)
    viewers: list[WhepViewer] = []
    try:
        await publisher.start()
        origin = _origin(lab, show_id)
        assert origin["node"] == "A" and origin["pipe"].startswith(f"{a.address}:"), origin

        on_b, on_c = await _watch(b, show_id), await _watch(c, show_id)
        viewers += [on_b, on_c]
        assert await wait_until(lambda: all(len(v.frames) >= 10 for v in viewers), 20), [
            len(v.frames) for v in viewers
        ]
        assert all(set(v.frames) == {(320, 240)} for v in viewers)

        # A late joiner on an edge starts from the edge's GOP cache: no new keyframe asked for.
        assert publisher.video is not None
        forced = publisher.video.keyframes_forced
        late = await _watch(b, show_id)
        viewers.append(late)
        assert await wait_until(lambda: len(late.frames) >= 10, 10)
        assert publisher.video.keyframes_forced == forced
        assert b.metric("liveshop_media_edges")[""] == 1
        assert a.metric("liveshop_media_pipes")['direction="out"'] == 2

        # A forged join and a forged RTP datagram at the origin's pipe address: both dropped.
        host, port = origin["pipe"].rsplit(":", 1)
        forged_join = json.dumps({"type": "join", "show": show_id, "epoch": origin["epoch"]})
        wrong_key = pipe_key("not-the-secret", show_id, origin["epoch"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            attacker.bind((lab.host_address, 0))
            attacker.sendto(seal(wrong_key, forged_join.encode()), (host, int(port)))
            attacker.sendto(seal(wrong_key, b"\x80\x60" + bytes(30)), (host, int(port)))
        assert await wait_until(
            lambda: a.metric("liveshop_media_pipe_dropped_total").get('reason="auth"', 0) >= 1, 5
        )
        assert a.metric("liveshop_media_pipes")['direction="out"'] == 2  # no pipe for it

        # Node B dies: A's origin and C's viewer carry on; A drops the pipe to B by itself.
        b.kill()
        frames = len(on_c.frames)
        assert await wait_until(lambda: len(on_c.frames) >= frames + 30, 15)
        assert await wait_until(
            lambda: a.metric("liveshop_media_pipes")['direction="out"'] == 1, 10
        )
        assert on_c.pc.connectionState == "connected"

        # Node A dies: C's edge hears nothing, ends, and its viewer's connection is closed.
        a.kill()
        assert await wait_until(lambda: on_c.pc.connectionState == "closed", 15)
        assert await wait_until(lambda: c.metric("liveshop_media_edges")[""] == 0, 5)
        assert http_json(c.url + "/healthz")[0] == 200
        # Its directory entry was never removed, but its lease runs out.
        assert await wait_until(lambda: not _origin(lab, show_id), 10)
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.stop()


async def test_h264_on_two_edges_and_the_origin_dying_ends_both(lab: Lab) -> None:
    a, b, c = lab.start_nodes(["A", "B", "C"])
    async with aiohttp.ClientSession() as http:
        show_id, host_token = await create_show(http, a.url, "netns h264")
    options = PublishOptions(codec="h264", width=320, height=240, fps=30, bitrate=400_000)
    publisher = Publisher(a.url, show_id, host_token, options)
    viewers: list[WhepViewer] = []
    try:
        await publisher.start()
        viewers += [await _watch(b, show_id), await _watch(c, show_id)]
        assert await wait_until(lambda: all(len(v.frames) >= 10 for v in viewers), 20), [
            len(v.frames) for v in viewers
        ]
        assert all(set(v.frames) == {(320, 240)} for v in viewers)

        a.kill()
        assert await wait_until(
            lambda: all(v.pc.connectionState == "closed" for v in viewers), 15
        ), [v.pc.connectionState for v in viewers]
        assert await wait_until(
            lambda: all(node.metric("liveshop_media_edges")[""] == 0 for node in (b, c)), 5
        )
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.stop()

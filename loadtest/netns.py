"""A network-namespace lab: server nodes on separate hosts, built on this machine (needs root).

Each node (``python -m server``) runs in a network namespace of its own with its own address;
the namespaces and this process (publisher and viewers) meet on a bridge in a hub namespace
through veth pairs, and one TCP Redis listens on this host's leg of the bridge, reachable
from all. Names and the /24 are unique per run (several labs may run at once); ``teardown``
removes everything. Used by ``tests/media/test_netns.py`` and ``benchmarks/media_scale.py``.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

from server.redis.embedded import find_redis_server

ROOT = Path(__file__).resolve().parent.parent


SECRET = "netns-lab-secret"
API_KEY = "lab:netns-lab-operator-api-key-0123456789"  # the operator key every node is given
# every client in one namespace shares an address: per-IP limits off on the lab's nodes
NO_IP_LIMITS = ("--ws-connects-per-ip", "0", "--ws-max-per-ip", "0", "--http-anon-per-ip", "0")
HTTP_PORT = 8080  # every node has an address of its own, so all listen on the same port
NODE_NAMES = "ABCDEFGH"


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

    def start_nodes(self, names: list[str], *extra: str) -> list[Node]:
        """Start the nodes at once (each in its namespace), then wait until all are healthy."""
        started = []
        for name in names:
            index = 2 + NODE_NAMES.index(name)
            address = f"{self.prefix}.{index}"
            data = self.workdir / f"data-{name}-{secrets.token_hex(3)}"
            data.mkdir(parents=True)
            log_path = data.with_suffix(".log")
            argv = ["ip", "netns", "exec", self.netns(name), sys.executable, "-m", "server"]
            argv += ["--host", address, "--port", str(HTTP_PORT), "--data-dir", str(data)]
            argv += ["--ice-addresses", address, "--redis-url", self.redis_url]
            argv += ["--secret", SECRET, "--node-id", name, "--guest-per-minute", "100000"]
            argv += ["--api-key", API_KEY, *NO_IP_LIMITS]
            argv += list(extra)
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
                    with urllib.request.urlopen(node.url + "/healthz", timeout=5) as resp:
                        if resp.status == 200:
                            break
                except (OSError, urllib.error.HTTPError):
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


def make_lab(workdir: Path, nodes: str = "ABC") -> Lab:
    """Build the namespaces and start Redis (call ``teardown`` whatever happens)."""
    tag = f"{os.getpid() % 1000:03d}{secrets.token_hex(1)}"
    lab = Lab(tag, _free_subnet(), workdir)
    try:
        lab.build(list(nodes))
        lab.start_redis()
    except BaseException:
        lab.teardown()
        raise
    return lab

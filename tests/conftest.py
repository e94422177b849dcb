"""Shared fixtures: a real embedded Redis for the session, the app in-process, servers as subprocesses."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from media.session import await_chain
from server.app import create_app
from server.config import Settings
from server.redis.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
# The operator API key every test server (in-process and subprocess) is started with.
API_KEY = "test:test-operator-api-key-0123456789abcdef"
OPERATOR = {"Authorization": f"Bearer {API_KEY}"}
# Per-IP limits off: every test client is 127.0.0.1 (tests of the limits set their own).
NO_IP_LIMITS = ["--ws-connects-per-ip", "0", "--ws-max-per-ip", "0", "--http-anon-per-ip", "0"]


# pytest-timeout's SIGALRM lands inside whatever the event loop is running, and asyncio's
# Handle._run logs a BaseException raised in a callback instead of propagating it: an async
# test stuck on an await with no timeout of its own then hangs the whole run. Each async test
# body therefore runs as a task bounded a few seconds inside its pytest-timeout; past the bound
# it is cancelled and given CANCEL_GRACE_S to unwind (its ``finally`` blocks), and a test that
# still has not finished (a cleanup awaiting something that never comes) fails with the stacks
# of every pending task instead of hanging the run.
ASYNC_TEST_MARGIN_S = 5.0
CANCEL_GRACE_S = 5.0
APP_CLOSE_S = 30.0  # an app's shutdown takes well under a second


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    default = float(config.getini("timeout") or 0)
    for item in items:
        test = getattr(item, "obj", None)
        if not isinstance(item, pytest.Function) or not inspect.iscoroutinefunction(test):
            continue
        marker = item.get_closest_marker("timeout")
        limit = float(marker.args[0]) if marker and marker.args else default
        if limit > ASYNC_TEST_MARGIN_S + CANCEL_GRACE_S:
            item.obj = _bounded(test, limit - ASYNC_TEST_MARGIN_S - CANCEL_GRACE_S)


def _bounded(test: Callable[..., Awaitable[Any]], limit: float) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(test)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        return await run_bounded(test(*args, **kwargs), limit, "async test")

    return bounded


async def run_bounded(work: Awaitable[Any], limit: float, what: str) -> Any:
    """``await work`` for at most ``limit`` seconds; past that it is cancelled and given
    CANCEL_GRACE_S to unwind, and fails either way with where every pending task was waiting."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    waiting = _task_stacks()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
    if not done:
        pytest.fail(
            f"{what} still running after {limit:.0f} s, its cleanup still stuck "
            f"{CANCEL_GRACE_S:.0f} s later in:\n{_task_stacks()}"
        )
    if not task.cancelled():
        task.result()  # its own error, raised while it unwound
    pytest.fail(
        f"{what} still running after {limit:.0f} s: cancelled; it was waiting in:\n{waiting}"
    )


def _task_stacks() -> str:
    return "\n".join(
        f"{task!r}\n{await_chain(task)}"
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server (the embedded one) for the whole session; tests use distinct show ids."""
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = embedded.start()
    yield url
    embedded.stop()


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        secret="test-secret",
        api_key=[API_KEY],
        guest_per_minute=100_000,
        ws_connects_per_ip=0,
        ws_max_per_ip=0,
        http_anon_per_ip=0,
        ice_addresses=["127.0.0.1"],
        payment_latency_ms=0,
    )


@pytest.fixture
async def aiohttp_client() -> AsyncIterator[Callable[..., Awaitable[TestClient]]]:
    """pytest-aiohttp's fixture, with each app's shutdown bounded the same way as the tests:
    an app whose cleanup hangs fails after APP_CLOSE_S naming where it waits."""
    clients: list[TestClient] = []

    async def start(app: web.Application, **kwargs: Any) -> TestClient:
        client = TestClient(TestServer(app), **kwargs)
        await client.start_server()
        clients.append(client)
        return client

    yield start
    while clients:
        await run_bounded(clients.pop().close(), APP_CLOSE_S, "closing the app")


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings
) -> TestClient:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def make_show(client: TestClient) -> Callable[..., Awaitable[tuple[str, str]]]:
    """Create a show through the API; returns (show_id, host_token)."""

    async def make(title: str = "Test show") -> tuple[str, str]:
        resp = await client.post("/api/shows", json={"title": title}, headers=OPERATOR)
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        return body["show"]["id"], body["host_token"]

    return make


@pytest.fixture
def post_show(client: TestClient) -> Callable[..., Awaitable[Any]]:
    """``await post_show(body)``: the raw ``POST /api/shows`` response, for tests of its input checks.

    Sends the same credential as ``make_show`` (keep the two in step).
    """

    async def post(body: Any) -> Any:
        return await client.post("/api/shows", json=body, headers=OPERATOR)

    return post


@pytest.fixture
def guest_token(client: TestClient) -> Callable[[str], Awaitable[str]]:
    async def make(show_id: str, name: str | None = None) -> str:
        resp = await client.post(f"/api/shows/{show_id}/guest", json={"name": name} if name else {})
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["token"])

    return make


def create_show_http(
    url: str, title: str = "Test show", api_key: str = API_KEY, **fields: str
) -> tuple[str, str]:
    """Create a show on a server process (blocking, with the operator key); (show id, host token)."""
    status, body = http_json(url + "/api/shows", "POST", {"title": title, **fields}, api_key)
    assert status == 201, body
    return str(body["show"]["id"]), str(body["host_token"])


@dataclass
class ServerProcess:
    """A ``python -m server`` child process."""

    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def http_json(
    url: str, method: str = "GET", body: dict | None = None, token: str | None = None
) -> tuple[int, dict]:
    """Blocking JSON request for process-level tests (no event loop needed)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def start_server(
    data_dir: Path,
    *args: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> ServerProcess:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"server-{data_dir.name}-{port}.log"  # one per process
    argv = [
        sys.executable,
        "-m",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    argv += ["--ice-addresses", "127.0.0.1", "--guest-per-minute", "100000", "--api-key", API_KEY]
    argv += [*NO_IP_LIMITS, *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=full_env
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", port, data_dir, proc, log_path, list(args))
    if wait:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
            try:
                status, _ = http_json(server.url + "/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                server.stop(signal.SIGKILL)
                raise RuntimeError(f"server did not become healthy:\n{server.log()}")
            time.sleep(0.1)
    return server


@pytest.fixture
def server_proc(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``server_proc("--demo", data_dir=..., port=...)`` starts a server process; all stop at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str, data_dir: Path | None = None, **kwargs: object) -> ServerProcess:
        server = start_server(data_dir or tmp_path / f"data{len(started)}", *args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()

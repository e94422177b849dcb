"""Sold-out flash sale over HTTP, measured with wrk, beside the bare-aiohttp floor, in one sitting.

    .venv/bin/python benchmarks/flash_sale_wrk.py --duration 10 --rounds 2

Starts a private Redis (the embedded one) and one ``python -m server`` process, creates a show,
a product and a live sale of ``--units`` units and sells them out (outside the timed part), then
points wrk (C, Debian package) at ``POST /api/sales/{id}/buy`` with ``--tokens`` distinct viewer
tokens (none holds a unit) and a fresh idempotency key per request. Three targets, alternated
round by round on the same machine:

- ``server``: liveshop with the sold-out short-circuit (the default);
- ``no-short-circuit``: liveshop with ``--no-soldout-short-circuit`` (every attempt goes to
  Redis through the buy micro-batcher, as before);
- ``floor``: a bare aiohttp app (same event loop, uvloop) whose one handler parses the same
  JSON body, checks the same token (``server.auth.verify``) and answers the same ``sold_out``
  JSON: what this request costs on aiohttp with no middleware, no router table, no Redis.

wrk's Lua script checks every answer is a 200 ``sold_out`` (a count of others is printed). The
report gives requests/s and latency percentiles per target and round, and the ratio of the
server's median to the floor's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flash_sale import BENCH_API_KEY, free_port, http  # noqa: E402 - the stampede benchmark's helpers

from server import auth  # noqa: E402
from server.redis.embedded import EmbeddedRedis  # noqa: E402

SECRET = "wrk-bench"


def wait_healthy(url: str, path: str = "/healthz") -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + path, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # answering at all is enough for the floor
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


def start_server(redis_url: str, tmp: Path, *extra: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    argv = [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(port),
            "--redis-url", redis_url, "--secret", SECRET, "--data-dir", str(tmp / f"data{port}"),
            "--log-level", "WARNING", "--api-key", BENCH_API_KEY, "--http-anon-per-ip", "0",
            "--ws-connects-per-ip", "0", "--ws-max-per-ip", "0", *extra]  # fmt: skip
    log = open(tmp / f"server{port}.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    return url, proc


def floor_main(port: int, sale_id: str) -> None:
    """The bare aiohttp floor: parse the JSON, check the token, answer sold_out."""
    import uvloop
    from aiohttp import web

    from server.commerce import fields

    async def buy(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        claims = auth.verify(SECRET, header.removeprefix("Bearer "), sale_id.split(".")[0])
        body = await request.json()
        fields.idempotency_key(body)
        del claims
        return web.json_response({"outcome": "sold_out", "sale_id": request.match_info["sale_id"]})

    app = web.Application()
    app.router.add_post("/api/sales/{sale_id}/buy", buy)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


WRK_LUA = """
local tokens = {%(tokens)s}
local n, counter = #tokens, 0
bad = 0  -- a global: done() reads it from each thread with thread:get
local path = "%(path)s"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function request()
  counter = counter + 1
  local headers = { ["Authorization"] = "Bearer " .. tokens[(counter %% n) + 1],
                    ["Content-Type"] = "application/json" }
  return wrk.format("POST", path, headers, '{"key":"w' .. counter .. '-' .. math.random(1e9) .. '"}')
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, "sold_out", 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write(string.format("BAD %%d\\n", total))
end
"""


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc): less noisy than requests/s here."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, script: Path, args: argparse.Namespace, pid: int, redis_pid: int
) -> dict[str, Any]:
    before, redis_before = cpu_s(pid), cpu_s(redis_pid)
    argv = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s",
            "--latency", "-s", str(script), url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out, re.M)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            lat[f"p{pct}_ms"] = round(float(m.group(1)) * scale, 3)
    found = re.search(r"BAD (\d+)", out)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    bad = int(found.group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu_us = (cpu_s(pid) - before) * 1e6 / max(requests, 1)
    redis_us = (cpu_s(redis_pid) - redis_before) * 1e6 / max(requests, 1)
    return {"rps": rps, **lat, "server_cpu_us_per_request": round(cpu_us, 1),
            "redis_cpu_us_per_request": round(redis_us, 1), "bad_answers": bad,
            "non_2xx": int(errors.group(1)) if errors else 0}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (each runs every target)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=2000, help="distinct viewer tokens")
    parser.add_argument("--units", type=int, default=10)
    parser.add_argument("--json", help="write the report here")
    if len(sys.argv) > 1 and sys.argv[1] == "--floor-server":
        floor_main(int(sys.argv[2]), sys.argv[3])
        return
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wrk-bench-"))
    redis = EmbeddedRedis(tmp / "redis")
    redis_url = redis.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        targets: dict[str, str] = {}
        pids: dict[str, int] = {}
        targets["server"], proc = start_server(redis_url, tmp)
        procs.append(proc)
        pids["server"] = proc.pid
        targets["no-short-circuit"], proc = start_server(
            redis_url, tmp, "--no-soldout-short-circuit"
        )
        procs.append(proc)
        pids["no-short-circuit"] = proc.pid
        base = targets["server"]
        created = http(base + "/api/shows", "POST", {"title": "wrk flash sale"}, BENCH_API_KEY)
        show_id, host = created["show"]["id"], created["host_token"]
        product = http(f"{base}/api/shows/{show_id}/products", "POST",
                       {"title": "Drop", "price": 100, "stock": args.units}, host)  # fmt: skip
        sale = http(f"{base}/api/shows/{show_id}/sales", "POST",
                    {"product_id": product["product"]["id"], "quantity": args.units, "price": 50,
                     "duration_s": 3600}, host)["sale"]  # fmt: skip
        for i in range(args.units):
            buyer = auth.issue(SECRET, show_id=show_id, role="viewer", name=f"early{i}")
            assert (
                http(f"{base}/api/sales/{sale['id']}/buy", "POST", {"key": "k"}, buyer)["outcome"]
                == "reserved"
            )
        floor_port = free_port()
        floor = subprocess.Popen(
            [sys.executable, __file__, "--floor-server", str(floor_port), sale["id"]], cwd=ROOT
        )
        procs.append(floor)
        pids["floor"] = floor.pid
        targets["floor"] = f"http://127.0.0.1:{floor_port}"
        wait_healthy(targets["floor"])
        tokens = [
            auth.issue(SECRET, show_id=show_id, role="viewer", name=f"v{i}")
            for i in range(args.tokens)
        ]
        script = tmp / "buy.lua"
        script.write_text(
            WRK_LUA
            % {"tokens": ",".join(f'"{t}"' for t in tokens), "path": f"/api/sales/{sale['id']}/buy"}
        )
        for url in (
            targets["server"],
            targets["no-short-circuit"],
        ):  # warm up; the first learns the flag
            for t in tokens[:5]:
                assert (
                    http(f"{url}/api/sales/{sale['id']}/buy", "POST", {"key": "warm"}, t)["outcome"]
                    == "sold_out"
                )
        time.sleep(1)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, url in targets.items():
                result = run_wrk(url, script, args, pids[name], redis.process.pid)
                results[name].append(result)
                print(name, result, flush=True)
        state = http(f"{base}/api/sales/{sale['id']}")["sale"]
        medians = {name: statistics.median(r["rps"] for r in rs) for name, rs in results.items()}
        cpu = {
            name: statistics.median(r["server_cpu_us_per_request"] for r in rs)
            for name, rs in results.items()
        }
        report = {
            "command": " ".join(sys.argv),
            "results": results,
            "median_rps": medians,
            "ratio_to_floor": {
                name: round(medians[name] / medians["floor"], 3)
                for name in ("server", "no-short-circuit")
            },
            "median_cpu_us_per_request": cpu,
            "median_redis_cpu_us_per_request": {
                name: statistics.median(r["redis_cpu_us_per_request"] for r in rs)
                for name, rs in results.items()
            },
            "floor_cpu_over_target_cpu": {
                name: round(cpu["floor"] / cpu[name], 3) for name in ("server", "no-short-circuit")
            },
            "sale_after": {k: state[k] for k in ("quantity", "left", "reserved", "sold")},
        }
        for name in ("median_rps", "ratio_to_floor", "median_cpu_us_per_request", "median_redis_cpu_us_per_request",
                     "floor_cpu_over_target_cpu", "sale_after"):  # fmt: skip
            print(name, json.dumps(report[name]))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.stop()


if __name__ == "__main__":
    main()

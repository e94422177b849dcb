"""Run one benchmark on two git revisions, alternately, and print medians and the ratio.

A restructure that must keep the hot paths' speed (issue 16) is judged by before/after numbers
taken in one sitting on the same machine: on a shared, loaded machine the load drifts over
minutes, so the two revisions run in alternating rounds (A B, B A, A B, ...) and the medians
are compared, not single runs.

    .venv/bin/python benchmarks/compare_revisions.py 13d9781 HEAD chat_fanout --rounds 3 -- \\
        --viewers 1000 --duration 8 --servers 1 --clients 1

Each revision is extracted with ``git archive`` into ``--workdir``/<commit> (no worktree is
registered in the repository) and gets its own venv there (``.venv``, ``pip install -e .``,
which also builds the media C extension), because the benchmarks start their servers with
``ROOT/.venv/bin/python``. Both are kept, keyed by commit, so later comparisons reuse them
(delete the directory to rebuild). Each revision runs its *own* copy of the benchmark script:
the arguments after ``--`` must mean the same to both.

Numbers are read from the benchmark's output: the last JSON object it prints (flattened:
``latency_ms.p99``; numeric lists also as ``.sum``), plus the ``REGEX_METRICS`` of that
benchmark (media_relay prints text) and any ``--metric NAME=REGEX`` (first group). Only the
benchmark's ``DEFAULT_KEYS`` are tabled unless ``--keys`` or ``--all-metrics`` says otherwise.
"""

# ruff: noqa: S603  (subprocesses with argument lists built here)
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

DEFAULT_KEYS: dict[str, list[str]] = {
    "chat_fanout": [
        "deliveries_per_s",
        "latency_ms.p50",
        "latency_ms.p99",
        "server_cpu.sum",
        "missing_deliveries",
    ],
    "flash_sale": [
        "median_attempts_per_s",
        "median_p50_ms",
        "median_p99_ms",
        "core.0.attempts_per_s",
        "core.1.attempts_per_s",
    ],
    "media_relay": [
        "us_per_packet",
        "intercept_cpu_pct",
        "us_per_packet_total_max_n",
        "cpu_ms_per_viewer_s_max_n",
    ],
}
REGEX_METRICS: dict[str, dict[str, str]] = {
    "media_relay": {
        "us_per_packet": r"slope: ([-\d.]+) µs CPU per forwarded packet",
        "intercept_cpu_pct": r"intercept ([-\d.]+)% CPU",
        # the largest N's row (the last one): whole-server CPU per packet, ingest included
        "us_per_packet_total_max_n": r"µs/pkt\(total\)\s+([\d.]+)",
        "cpu_ms_per_viewer_s_max_n": r"CPU/viewer-s\s+([\d.]+) ms",
    },
}


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def prepare(rev: str, workdir: Path) -> Path:
    """The revision's tree with its own venv, built once per commit."""
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tree = workdir / sha[:12]
    if (tree / ".compare-ready").exists():
        return tree
    t0 = time.monotonic()
    tree.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as archive:
        subprocess.run(["git", "-C", str(REPO), "archive", sha], check=True, stdout=archive)
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(tree, filter="data")
    venv = tree / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = tree / ".compare-install.log"
    with log.open("w") as out:
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
        done = subprocess.run([*pip, "-e", str(tree)], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"pip install -e {tree} failed; see {log}")
    (tree / ".compare-ready").write_text(sha + "\n")
    print(f"prepared {rev} ({sha[:12]}) in {tree} in {time.monotonic() - t0:.0f} s", flush=True)
    return tree


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Numbers of a JSON value by dotted path; numeric lists also get ``.sum``."""
    out: dict[str, float] = {}
    if isinstance(value, bool):
        return out
    if isinstance(value, int | float):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}"))
        if value and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            out[f"{prefix}.sum"] = float(sum(value))
    return out


def last_json(text: str) -> dict[str, Any] | None:
    """The last JSON object in ``text``: one line, or an indented block starting a line."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                break  # the first line of an indented block: parse from there below
            if isinstance(value, dict):
                return value
    start = text.rfind("\n{")
    if start >= 0 or text.startswith("{"):
        try:
            value = json.loads(text[start + 1 :] if start >= 0 else text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    return None


def metrics(text: str, patterns: dict[str, str]) -> dict[str, float]:
    found = flatten(last_json(text) or {})
    for name, pattern in patterns.items():
        match = re.findall(pattern, text)
        if match:
            found[name] = float(match[-1])
    return found


def run(tree: Path, bench: str, args: list[str], timeout: float) -> tuple[str, float, bool]:
    """One benchmark run in ``tree`` with its venv; (stdout, seconds, finished in time)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{tree / '.venv/bin'}:{env.get('PATH', '')}"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(tree / ".venv/bin/python"), str(tree / "benchmarks" / f"{bench}.py"), *args],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its servers and clients share the group: one kill ends all
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        ok = proc.returncode == 0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        ok = False
    return out, time.monotonic() - t0, ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", help="git revision (commit, branch, tag)")
    parser.add_argument("after", help="git revision")
    parser.add_argument("benchmark", help="a script name in benchmarks/, without .py")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds per run")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "liveshop-compare",
        help="where revisions are extracted and their venvs kept",
    )
    parser.add_argument("--keys", default="", help="comma-separated metrics to table")
    parser.add_argument("--all-metrics", action="store_true", help="table every number")
    parser.add_argument(
        "--metric", action="append", default=[], help="NAME=REGEX read from the output"
    )
    parser.add_argument("--log", type=Path, help="append every run's output here")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    opts = parser.parse_args(argv[:split])
    opts.args = argv[split + 1 :]  # the benchmark's own arguments, after --
    if opts.rounds < 1:
        parser.error("--rounds must be at least 1")
    patterns = dict(REGEX_METRICS.get(opts.benchmark, {}))
    for item in opts.metric:
        name, sep, pattern = item.partition("=")
        if not sep or re.compile(pattern).groups < 1:
            parser.error(f"--metric {item!r}: expected NAME=REGEX with one group")
        patterns[name] = pattern
    revs = {"before": opts.before, "after": opts.after}
    trees = {label: prepare(rev, opts.workdir) for label, rev in revs.items()}
    for label, tree in trees.items():
        if not (tree / "benchmarks" / f"{opts.benchmark}.py").exists():
            sys.exit(f"{revs[label]} has no benchmarks/{opts.benchmark}.py")
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for r in range(opts.rounds):
        order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for label in order:
            load = os.getloadavg()[0]
            out, seconds, ok = run(trees[label], opts.benchmark, opts.args, opts.timeout)
            if opts.log:
                with opts.log.open("a") as log:
                    log.write(f"### round {r + 1} {label} ({revs[label]}) ok={ok}\n{out}\n")
            found = metrics(out, patterns)
            if not ok or not found:
                print(f"round {r + 1} {label}: FAILED after {seconds:.0f} s:\n{out[-3000:]}")
                sys.exit(1)
            results[label].append(found)
            shown = {
                k: found[k] for k in DEFAULT_KEYS.get(opts.benchmark, sorted(found)) if k in found
            }
            print(
                f"round {r + 1} {label:6s} {seconds:5.0f} s  load {load:4.1f}  {json.dumps(shown)}",
                flush=True,
            )
    if opts.all_metrics:
        keys = sorted(set(results["before"][0]) & set(results["after"][0]))
    elif opts.keys:
        keys = opts.keys.split(",")
    else:
        keys = DEFAULT_KEYS.get(opts.benchmark) or sorted(results["before"][0])
    print(
        f"\n{opts.benchmark}: before {revs['before']} ({trees['before'].name}), "
        f"after {revs['after']} ({trees['after'].name}), {opts.rounds} alternating rounds, "
        f"args: {' '.join(opts.args)}"
    )
    print("| metric | before (median) | after (median) | after/before |")
    print("|---|---:|---:|---:|")
    for key in keys:
        before = [m[key] for m in results["before"] if key in m]
        after = [m[key] for m in results["after"] if key in m]
        if not before or not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        ratio = f"{a / b:.3f}" if b else "–"
        print(f"| {key} | {b:g} | {a:g} | {ratio} |")


if __name__ == "__main__":
    main()

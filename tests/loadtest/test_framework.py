"""Framework pieces: HDR merge across workers, SLO parsing, the HTML report, the spawned server."""

from __future__ import annotations

import urllib.request

import pytest

from loadtest import metrics
from loadtest.cli import exit_status, summary_line
from loadtest.report_html import render
from loadtest.slo import evaluate_slos, parse_slos
from loadtest.spawn import SpawnedServer


def test_hdr_histograms_merge_exactly_across_workers() -> None:
    a, b, whole = metrics.new_histogram(), metrics.new_histogram(), metrics.new_histogram()
    for value in range(1, 5001):
        (a if value % 2 else b).record_value(value * 100)
        whole.record_value(value * 100)
    merged = metrics.new_histogram()
    metrics.merge_into(merged, metrics.encode(a))
    metrics.merge_into(merged, metrics.encode(b))
    metrics.merge_into(merged, metrics.encode(metrics.new_histogram()))  # an idle worker
    assert merged.get_total_count() == 5000
    assert metrics.summary_ms(merged) == metrics.summary_ms(whole)
    assert metrics.summary_ms(merged)["p50"] == pytest.approx(250.0, rel=0.01)


def test_worker_stats_ticks_are_deltas() -> None:
    stats = metrics.WorkerStats()
    stats.add("sent", 3)
    stats.latency_us(1000)
    first = stats.tick()
    stats.add("sent", 2)
    second = stats.tick()
    assert first["counters"] == {"sent": 3} and second["counters"] == {"sent": 2}
    assert first["latency"] and not second["latency"]
    assert stats.final()["counters"] == {"sent": 5}


def test_slo_parsing_and_evaluation() -> None:
    slos = parse_slos("p99<250, errors<0.1%,loss<=0")
    report = {
        "latency_ms": {"p99": 120.0},
        "attempts": 10_000,
        "connect_errors": 5,
        "errors": 0,
        "expected": 100,
        "lost": 0,
    }
    assert [s["ok"] for s in evaluate_slos(slos, report)] == [True, True, True]
    report["connect_errors"] = 50
    assert [s["ok"] for s in evaluate_slos(slos, report)] == [True, False, True]
    with pytest.raises(ValueError, match="unknown SLO metric"):
        parse_slos("p42<1")
    with pytest.raises(ValueError, match="bad SLO term"):
        parse_slos("p99 is small")


def sample_report(saturated: bool) -> dict:
    return {
        "scenario": "chat", "latency_ms": {"p50": 1.0, "p90": 1.5, "p99": 3.0, "p999": 4.0, "max": 5.0},
        "timeline": [{"t": t, "connected": 0, "sent": 5, "received": 50, "errors": 0,
                      "p50_ms": 1.0, "p99_ms": 2.0 + t, "tester_cpu_pct": 20.0} for t in range(1, 6)],
        "latency_histogram_ms": [(1.0, 5), (2.0, 9)],
        "invariants": {"nothing_oversold": {"ok": True, "detail": "0 oversold"}},
        "slos": [{"slo": "p99<250", "ok": True, "value": 3.0}, {"slo": "errors<0.1%", "ok": True, "value": 0.0}],
        "tester": {"processes": 2, "cpu_s": 9.9, "cpu_pct": 98.9, "peak_cpu_pct": 98.9,
                   "loop_lag_ms": {"p99": 542.0}, "saturated": saturated},
        "sale": {"outcomes": {"reserved": 10, "sold_out": 90}, "reserved_over_time": [(1.0, 1), (5.0, 10)],
                 "buy_latency_ms": {"p50": 2.0, "p99": 9.0}},
    }  # fmt: skip


def test_html_report_leads_with_verdicts_and_is_self_contained() -> None:
    page = render(sample_report(saturated=False))
    assert 'data-verdict="pass"' in page and 'id="saturated"' not in page
    # Each objective: metric, target with its unit, measured value, pass/fail.
    slos = page.split('<table id="slos">')[1].split("</table>")[0]
    assert '<th>p99</th><td>&lt; 250 ms</td><td class="num">3 ms</td>' in slos
    assert "errors" in slos and "&lt; 0.1 %" in slos
    # Readable tables: no raw JSON dicts; the sale's latency is "p50 2, p99 9".
    assert "{&quot;" not in page and "buy latency ms" in page and "p50 2, p99 9" in page
    # Plotly, inlined once; no network; an HTTP run (connected 0 throughout) has no empty plot.
    assert page.count("<script>") == 2 and "Plotly.newPlot" in page
    ours = page.split("<script>")[0] + page.split("</script>", 1)[1]  # all but plotly.js itself
    assert 'src="http' not in ours and 'href="http' not in ours and "<link" not in ours
    assert '"Connected clients"' not in page and '"Latency per second"' in page
    assert '"latency (ms)"' in page and '"time since start (s)"' in page


def test_a_saturated_tester_is_a_banner_never_ok() -> None:
    report = sample_report(saturated=True)
    page = render(report)
    assert 'id="saturated"' in page and "TESTER SATURATED" in page and "542 ms" in page
    assert 'data-verdict="inconclusive"' in page
    title = page.split("<title>")[1].split("</title>")[0]
    assert "INCONCLUSIVE" in title and "OK" not in title and "PASS" not in title
    report.update(ok=False, verdict="inconclusive", scenario="chat", duration_s=1.0, clients=1,
                  connect_errors=0, errors=0, sent=1, received=1, lost=0, dropped=0,
                  deliveries_per_s=1.0)  # fmt: skip
    text = summary_line(report)
    assert text.startswith("!!! TESTER SATURATED") and ": OK" not in text
    assert "SLO p99: target < 250 ms, measured 3 ms" in text
    assert exit_status(report) == 3
    report["slos"][0]["ok"] = False
    assert exit_status(report) == 1


def test_spawned_server_is_measured_and_cleaned_up() -> None:
    server = SpawnedServer()
    url = server.start()
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
            assert resp.status == 200
        # The server's own CPU is counted (in clock ticks): requests make it grow.
        start = server.measure()["cpu_s"]
        for _ in range(5000):
            urllib.request.urlopen(url + "/healthz", timeout=5).read()
            if server.measure()["cpu_s"] > start:
                break
        measured = server.measure()
        assert measured["rss_mb"] > 10 and measured["redis_rss_mb"] > 1
        assert measured["cpu_s"] > start, measured
    finally:
        totals = server.stop()
    assert totals["cpu_s"] >= measured["cpu_s"]
    assert not server.data_dir.exists()
    assert server.proc is not None and server.proc.poll() is not None
    assert set(totals) == {"cpu_s", "rss_mb", "redis_cpu_s", "redis_rss_mb"}


def test_lean_websocket_frames_round_trip() -> None:
    from loadtest.lean_ws import _Protocol, encode_frame, mask

    key = b"\x01\x02\x03\x04"
    assert mask(mask(b"hello liveshop", key), key) == b"hello liveshop"
    frame = encode_frame(2, b"x" * 300)
    assert frame[0] == 0x82 and frame[1] == 0x80 | 126 and int.from_bytes(frame[2:4], "big") == 300
    # Server frames (unmasked), split across reads, with a ping in between: parsed in order, ping answered.
    got: list[tuple[int, bytes]] = []
    proto = _Protocol.__new__(_Protocol)
    proto.buffer, proto.on_message, proto._fragments, proto._close_sent = (
        bytearray(),
        lambda op, p: got.append((op, p)),
        [],
        False,
    )
    proto.transport = None
    stream = (
        bytes([0x82, 3])
        + b"abc"
        + bytes([0x89, 0])
        + bytes([0x02, 2])
        + b"de"
        + bytes([0x80, 1])
        + b"f"
    )
    for i in range(0, len(stream), 3):
        proto.buffer += stream[i : i + 3]
        proto._parse()
    assert got == [(2, b"abc"), (2, b"def")]


def test_seeded_crowds_do_not_depend_on_the_worker_split() -> None:
    from loadtest.scenarios.base import WorkerEnv

    def env(index: int, count: int, seed: int | None = 7) -> WorkerEnv:
        return WorkerEnv(index, count, "", {"seed": seed}, None, None, None, None, 0.0)  # type: ignore[arg-type]

    one = [env(0, 1).client_rng(i).random() for i in range(10)]
    split = [env(i % 2, 2).client_rng(i).random() for i in range(10)]
    assert one == split
    assert (
        env(0, 1, seed=None).client_rng(3).random() != env(0, 1, seed=None).client_rng(3).random()
    )

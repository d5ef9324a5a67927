"""`infraplan bench`: metric definitions, bounds, failures, JSON and CLI, against real sim servers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from click.testing import CliRunner

from infraplan.bench import (
    MAX_CONCURRENCY,
    BenchConfig,
    BenchError,
    BenchResult,
    ClientUsage,
    RequestRecord,
    endpoint_url,
    percentile,
    run_bench,
    summarize,
)
from infraplan.cli.main import cli
from helpers.timing import within


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def start_sim():
    """Start an infraplan sim on a free port; every one is killed at the end of the module."""
    procs: list[subprocess.Popen] = []

    def start(*extra: str, ttft_ms: float = 40, tpot_ms: float = 5) -> str:
        p = subprocess.Popen(
            [sys.executable, "-m", "infraplan.serving.sim", "--host", "127.0.0.1", "--port", "0",
             "--model-path", "org/m", "--revision", "abc", "--served-model-name", "m",
             "--ttft-ms", str(ttft_ms), "--tpot-ms", str(tpot_ms), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(p)
        line = p.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        return line.split("listening on ", 1)[1].split()[0]

    yield start
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()


@pytest.fixture(scope="module")
def sim(start_sim):
    return start_sim(ttft_ms=40, tpot_ms=5)


def _record(i, ttft, e2e, out, itl=(), ok=True, prompt=10, error=None):
    return RequestRecord(index=i, start_s=0.0, success=ok, ttft_s=ttft, e2e_s=e2e, itl_s=list(itl),
                         prompt_tokens=prompt, output_tokens=out, error=error)


def _result(records, duration=2.0, client=None):
    cfg = BenchConfig(url="http://x", api="openai-chat", model=None, concurrency=1, rate=None, arrival="poisson",
                      duration_s=None, num_requests=len(records), prompt_tokens=10, output_tokens=5,
                      timeout_s=1.0, seed=0)
    return BenchResult(config=cfg, records=records, duration_s=duration, started_at="t", client=client)


def _sim_requests(url: str) -> float:
    from infraplan.serving.sglang_client import metric_total, parse_metrics

    return metric_total(parse_metrics(httpx.get(url + "/metrics").text), "sglang:num_requests_total")


def _peak_in_flight(records) -> int:
    """The most requests whose [start, start + e2e] overlap."""
    edges = sorted([(r.start_s, 1) for r in records] + [(r.start_s + r.e2e_s, -1) for r in records])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


# -- pure statistics ---------------------------------------------------------------------------
def test_percentile_is_linear_interpolation_like_numpy():
    xs = [4.0, 1.0, 3.0, 2.0]
    assert percentile(xs, 50) == pytest.approx(2.5)
    assert percentile(xs, 90) == pytest.approx(3.7)  # rank 2.7 between 3 and 4
    assert percentile(xs, 99) == pytest.approx(3.97)
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 4.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_summarize_in_ms_and_empty_is_null():
    s = summarize([0.001, 0.003])
    assert s["count"] == 2
    assert s["mean"] == pytest.approx(2.0) and s["median"] == pytest.approx(2.0)
    assert s["std"] == pytest.approx(1.0)  # population std, like np.std
    assert s["max"] == pytest.approx(3.0) and s["p99"] == pytest.approx(2.98)
    empty = summarize([])
    assert empty["count"] == 0 and all(v is None for k, v in empty.items() if k != "count")


def test_tpot_definition_and_one_token_requests():
    assert _record(0, 0.1, 0.5, 5).tpot_s == pytest.approx((0.5 - 0.1) / 4)
    assert _record(1, 0.1, 0.1, 1).tpot_s is None  # one output token: no TPOT
    assert _record(2, None, None, 0, ok=False).tpot_s is None
    r = _result([_record(0, 0.1, 0.5, 5), _record(1, 0.2, 0.2, 1)])
    lat = r.latency_ms()
    assert lat["tpot"]["count"] == 1 and lat["tpot"]["mean"] == pytest.approx(100.0)
    assert lat["ttft"]["count"] == 2 and lat["ttft"]["mean"] == pytest.approx(150.0)


def test_throughput_and_failures_use_completed_requests_only():
    recs = [_record(0, 0.1, 0.5, 5, itl=[0.1] * 4), _record(1, 0.1, 0.3, 3, itl=[0.1, 0.1]),
            _record(2, None, None, 0, ok=False, error="HTTP 500"),
            _record(3, None, None, 0, ok=False, error="HTTP 500"),
            _record(4, None, None, 0, ok=False, error="timeout after 1s")]
    r = _result(recs, duration=2.0)
    tp = r.throughput()
    assert tp["requests_per_s"] == pytest.approx(1.0)
    assert tp["output_tokens_per_s"] == pytest.approx(4.0)
    assert tp["input_tokens_per_s"] == pytest.approx(10.0)
    assert tp["total_tokens_per_s"] == pytest.approx(14.0)
    assert tp["concurrency"] == pytest.approx(0.4)  # sum(e2e) / duration
    assert r.failure_reasons() == {"HTTP 500": 2, "timeout after 1s": 1}
    assert r.latency_ms()["itl"]["count"] == 6


def test_endpoint_url_routes():
    assert endpoint_url("http://h:1", "openai-chat") == ("http://h:1", "http://h:1/v1/chat/completions")
    assert endpoint_url("http://h:1/v1/", "openai-completions")[1] == "http://h:1/v1/completions"
    assert endpoint_url("http://h:1/generate", "openai-chat")[1] == "http://h:1/generate"
    assert endpoint_url("https://h/p", "sglang-generate") == ("https://h/p", "https://h/p/generate")
    with pytest.raises(BenchError):
        endpoint_url("h:1", "openai-chat")
    with pytest.raises(BenchError):
        endpoint_url("http://h:1", "grpc")


# -- against the simulator ---------------------------------------------------------------------
@pytest.mark.parametrize("api", ["openai-chat", "openai-completions", "sglang-generate"])
def test_metrics_match_the_simulated_latencies(sim, api):
    r = run_bench(sim, api=api, concurrency=4, num_requests=8, output_tokens=20, prompt_tokens=16)
    d = r.to_dict()
    assert d["requests"] == {"sent": 8, "completed": 8, "failed": 0}
    assert [x.output_tokens for x in r.records] == [20] * 8
    assert d["tokens"]["output"] == 160
    lat = d["latency_ms"]
    # lower bounds check the definitions; upper bounds are tolerant (a loaded 2-core CI machine
    # adds delay): exact figures belong in benchmarks/
    assert 38 <= lat["ttft"]["median"] <= within(120)  # sim: first token 40 ms after the request
    assert 4.5 <= lat["tpot"]["median"] <= within(10)  # then one every 5 ms
    assert 4.0 <= lat["itl"]["median"] <= within(10)
    assert lat["itl"]["count"] == 8 * 19
    assert 130 <= lat["e2e"]["median"] <= within(300)  # 40 + 19 * 5
    for x in r.records:  # TPOT is (e2e - ttft) / (n - 1) per request
        assert x.tpot_s == pytest.approx((x.e2e_s - x.ttft_s) / 19)
        assert x.e2e_s >= x.ttft_s + sum(x.itl_s) - 1e-6
    assert d["model"] == (None if api == "sglang-generate" else "m")


def test_concurrency_is_bounded(sim):
    seen: list[int] = []
    done = threading.Event()

    def poll():
        with httpx.Client() as c:
            while not done.is_set():
                seen.append(c.get(sim + "/v1/loads").json()["loads"][0]["num_running_reqs"])
                time.sleep(0.01)

    t = threading.Thread(target=poll)
    t.start()
    try:
        r = run_bench(sim, concurrency=3, num_requests=9, output_tokens=40)
    finally:
        done.set()
        t.join()
    assert r.to_dict()["requests"]["completed"] == 9
    assert max(seen) == 3  # reached, never exceeded
    assert r.throughput()["concurrency"] <= 3.0


def test_stops_at_duration(sim):
    t = time.monotonic()
    r = run_bench(sim, concurrency=2, duration_s=0.5, output_tokens=10)  # ~85 ms per request
    wall = time.monotonic() - t
    assert len(r.records) >= 4
    assert all(x.start_s < 0.5 for x in r.records)
    assert r.duration_s < 0.5 + within(0.4) and wall < within(2.0)


def test_stops_at_request_cap_before_duration(sim):
    r = run_bench(sim, concurrency=4, num_requests=5, duration_s=30, output_tokens=4)
    assert len(r.records) == 5 and r.duration_s < within(2)


def test_fixed_rate_spaces_arrivals(sim):
    r = run_bench(sim, concurrency=8, rate=20, arrival="fixed", num_requests=5, output_tokens=4)
    starts = [x.start_s for x in r.records]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(0.04 <= g <= 0.1 for g in gaps), gaps


def test_failures_are_counted_with_reasons(start_sim):
    url = start_sim("--error-rate", "0.5", ttft_ms=5, tpot_ms=1)
    r = run_bench(url, concurrency=8, num_requests=40, output_tokens=4)
    d = r.to_dict()
    assert d["requests"]["sent"] == 40
    assert 5 <= d["requests"]["failed"] <= 35
    assert d["failures"] == {"HTTP 500": d["requests"]["failed"]}
    assert d["latency_ms"]["ttft"]["count"] == d["requests"]["completed"]
    assert all(x.status == 500 for x in r.failed)


def test_timeouts_are_failures_and_the_run_ends(sim):
    t = time.monotonic()
    r = run_bench(sim, concurrency=2, num_requests=2, output_tokens=200, timeout_s=0.2)
    assert time.monotonic() - t < within(2)
    assert r.failure_reasons() == {"timeout after 0.2s": 2}


def test_unreachable_endpoint_raises():
    with pytest.raises(BenchError, match="cannot reach"):
        run_bench("http://127.0.0.1:1", num_requests=1, timeout_s=2)


def test_bad_arguments_raise():
    for kw in ({"concurrency": 0}, {"rate": -1}, {"num_requests": 0}, {"duration_s": 0}, {"output_tokens": 0}):
        with pytest.raises(BenchError):
            run_bench("http://127.0.0.1:1", **kw)


class _Broken(BaseHTTPRequestHandler):
    """Streams two chat chunks, then closes the connection without [DONE]."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):  # noqa: N802
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for word in ("a", "b"):
            self.wfile.write(b'data: {"choices": [{"delta": {"content": "%s"}}]}\n\n' % word.encode())
            self.wfile.flush()
        self.close_connection = True


def test_broken_stream_is_a_failure():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        r = run_bench(f"http://127.0.0.1:{server.server_address[1]}", num_requests=3, concurrency=1)
    finally:
        server.shutdown()
        server.server_close()
    assert r.failure_reasons() == {"broken stream (no [DONE])": 3}


def test_json_format(sim):
    r = run_bench(sim, concurrency=2, num_requests=3, output_tokens=5, prompt_tokens=7)
    doc = json.loads(r.to_json(include_records=True))
    assert doc["format_version"] == 1 and doc["tool"] == "infraplan bench"
    assert doc["config"]["num_requests"] == 3 and doc["config"]["api"] == "openai-chat"
    assert set(doc["latency_ms"]) == {"ttft", "tpot", "itl", "e2e"}
    assert set(doc["latency_ms"]["ttft"]) == {"count", "mean", "std", "median", "p90", "p95", "p99", "max"}
    assert set(doc["throughput"]) == {"requests_per_s", "input_tokens_per_s", "output_tokens_per_s",
                                      "total_tokens_per_s", "concurrency"}
    assert doc["throughput"]["requests_per_s"] == pytest.approx(3 / doc["duration_s"])
    assert len(doc["records"]) == 3 and doc["records"][0]["output_tokens"] == 5
    assert doc["records"][0]["prompt_tokens"] == 8  # the sim counts "user:" as a word
    assert "records" not in json.loads(r.to_json())


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_json_and_table(sim):
    runner = CliRunner()
    res = runner.invoke(cli, ["bench", sim, "--requests", "4", "-c", "2", "--output-tokens", "5", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["requests"]["completed"] == 4 and doc["tokens"]["output"] == 20

    res = runner.invoke(cli, ["bench", sim, "--requests", "3", "--output-tokens", "3", "--api", "sglang-generate"])
    assert res.exit_code == 0, res.output
    assert "3 completed, 0 failed" in res.output
    assert "TTFT" in res.output and "TPOT" in res.output and "E2E latency" in res.output
    assert "\x1b[" not in res.output  # no colour when not a TTY


def test_cli_exit_codes(sim, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["bench", sim, "--duration", "soon"]).exit_code == 1
    res = runner.invoke(cli, ["bench", sim, "--concurrency", "0"])
    assert res.exit_code == 1 and "Invalid value" in res.output
    assert runner.invoke(cli, ["bench"]).exit_code == 1  # URL missing
    res = runner.invoke(cli, ["bench", "http://127.0.0.1:1", "--requests", "1"])
    assert res.exit_code == 1 and "cannot reach" in res.output
    res = runner.invoke(cli, ["bench", "fleet.chat", "--state", str(tmp_path / "none.db")])
    assert res.exit_code == 1 and "no state file" in res.output


def test_cli_fleet_address_from_state(sim, tmp_path):
    from infraplan.state import StateStore

    db = tmp_path / "infraplan.db"
    with StateStore(db) as s:
        s.put("fleet.chat", kind="fleet", attributes={"endpoint": sim, "endpoints": [sim]})
        s.put("fleet.cold", kind="fleet", attributes={"endpoint": None})
    runner = CliRunner()
    res = runner.invoke(cli, ["bench", "fleet.chat", "--state", str(db), "--requests", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["config"]["url"] == sim
    res = runner.invoke(cli, ["bench", "fleet.cold", "--state", str(db), "--requests", "2"])
    assert res.exit_code == 1 and "no endpoint" in res.output
    res = runner.invoke(cli, ["bench", "fleet.nope", "--state", str(db), "--requests", "2"])
    assert res.exit_code == 1 and "no resource" in res.output


def test_stop_event_ends_a_background_run(sim):
    stop = threading.Event()
    out: list[BenchResult] = []
    t = threading.Thread(target=lambda: out.append(
        run_bench(sim, concurrency=2, duration_s=30, output_tokens=10, stop=stop)))
    t.start()
    time.sleep(0.4)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert out and out[0].duration_s < within(1.5) and out[0].to_dict()["requests"]["completed"] >= 2


def test_warmup_requests_go_first_and_are_not_counted(sim):
    before = _sim_requests(sim)
    r = run_bench(sim, concurrency=2, num_requests=3, warmup=4, output_tokens=2, prompt_tokens=4)
    assert _sim_requests(sim) - before == 7  # all sent to the server
    d = r.to_dict()
    assert d["requests"] == {"sent": 3, "completed": 3, "failed": 0} and [x.index for x in r.records] == [0, 1, 2]
    assert d["warmup"] == {"requests": 4, "failed": 0} and d["config"]["warmup_requests"] == 4
    assert all(0 <= x.start_s < within(1) for x in r.records)  # measured from after the warm-up


def test_a_rate_is_an_open_loop_not_bounded_by_the_closed_loop_default(sim):
    # 150 ms requests arriving every 10 ms: ~15 in flight, more than the closed loop's 8
    r = run_bench(sim, rate=100, arrival="fixed", num_requests=30, output_tokens=20, prompt_tokens=4)
    d = r.to_dict()
    assert d["mode"] == "open-loop" and d["config"]["concurrency"] == MAX_CONCURRENCY
    assert d["requests"]["completed"] == 30
    assert _peak_in_flight(r.records) > 8
    closed = run_bench(sim, num_requests=16, output_tokens=20, prompt_tokens=4).to_dict()
    assert closed["mode"] == "closed-loop" and closed["config"]["concurrency"] == 8


def test_the_client_reports_its_own_cpu(sim):
    r = run_bench(sim, concurrency=4, num_requests=12, output_tokens=20, prompt_tokens=4)
    c = r.to_dict()["client"]
    assert 0 < c["loop_cpu_s"] <= c["cpu_s"] + 0.05 and c["cpu_ms_per_request"] == pytest.approx(c["cpu_s"] * 1000 / 12)
    assert 0 < c["core_share"] < 1.5 and c["saturated"] is (c["core_share"] > 0.8)


def test_a_saturated_client_is_warned_about():
    busy = ClientUsage(cpu_s=0.95, loop_cpu_s=0.9, duration_s=1.0, requests=100)
    idle = ClientUsage(cpu_s=0.2, loop_cpu_s=0.2, duration_s=1.0, requests=100)
    assert busy.saturated and busy.cpu_ms_per_request == pytest.approx(9.5)
    assert "90% of one core" in busy.warning() and idle.warning() is None
    doc = json.loads(_result([_record(0, 0.1, 0.5, 5)], client=busy).to_json())
    assert doc["client"]["saturated"] is True and doc["warnings"] == [busy.warning()]
    assert json.loads(_result([_record(0, 0.1, 0.5, 5)], client=idle).to_json())["warnings"] == []

    from rich.console import Console

    from infraplan.cli.commands.bench import _render

    console = Console(record=True, width=200, color_system=None)
    _render(_result([_record(0, 0.1, 0.5, 5)], client=busy), console)
    text = console.export_text()
    assert "Client: 0.95 s CPU, 9.50 ms per request, event loop at 90% of one core" in text
    assert "Warning: the bench client used 90% of one core" in text


def test_cli_warmup_and_rate(sim):
    runner = CliRunner()
    res = runner.invoke(cli, ["bench", sim, "--requests", "4", "--rate", "50", "--warmup", "2", "--output-tokens", "3",
                              "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["mode"] == "open-loop" and doc["warmup"] == {"requests": 2, "failed": 0}
    assert doc["client"]["cpu_ms_per_request"] > 0
    res = runner.invoke(cli, ["bench", sim, "--requests", "2", "--output-tokens", "3", "--warmup", "1"])
    assert res.exit_code == 0 and "closed-loop" in res.output and "warmup=1" in res.output
    assert "Client: " in res.output and "ms per request" in res.output
    assert runner.invoke(cli, ["bench", sim, "--warmup", "-1"]).exit_code == 1


def test_the_cli_offers_exactly_the_library_apis():
    from infraplan.bench import API_ROUTES
    from infraplan.cli.commands.bench import APIS

    assert set(APIS) == set(API_ROUTES)

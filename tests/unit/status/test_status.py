"""`infraplan status`: figures from real simulator /metrics over a window, unreadable replicas
said as such (never zeros), measured $ per 1M output tokens, Prometheus exposition."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers.cli import run
from helpers.sims import start_sim
from infraplan.state import StateStore
from infraplan.status.collect import collect, prometheus_text


@pytest.fixture
def sims():
    started = [start_sim(ttft_ms=20, tpot_ms=5) for _ in range(2)]
    yield [url for _, url in started]
    for server, _ in started:
        server.shutdown()


def _state(path, urls):
    with StateStore(path) as store:
        store.put("fleet.chat", kind="fleet", attributes={"replicas": len(urls)})
        for i, u in enumerate(urls):
            store.put(f"fleet.chat[{i}]", kind="replica", attributes={"fleet": "fleet.chat", "endpoint": u})
        store.add_history(operation="apply", plan_hash="x", summary={"hourly_by_fleet": {"fleet.chat": 9.0}},
                          who="t", started_at="t", finished_at="t", status="ok", config_digest="d",
                          desired_config={})


def _load(url: str, stop: threading.Event) -> None:
    with httpx.Client(timeout=10, trust_env=False) as c:
        while not stop.is_set():
            c.post(f"{url}/v1/chat/completions", json={"model": "tiny", "max_tokens": 20,
                                                       "messages": [{"role": "user", "content": "hi"}]})


def test_figures_under_load_and_an_unreadable_replica(tmp_path, sims):
    db = tmp_path / "s.db"
    _state(db, [*sims, "http://127.0.0.1:9"])  # the third replica answers nothing
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(u, stop), daemon=True) for u in sims]
    for t in threads:
        t.start()
    try:
        snap = StateStore.open_readonly(db).snapshot()
        report = collect(snap, {"fleet.chat": 9.0}, window_s=1.5)
    finally:
        stop.set()
    (fleet,) = report.fleets
    f = fleet.figures
    assert f["requests_per_s"] > 2 and f["output_tokens_per_s"] > 40
    assert 20 <= f["ttft_p50_ms"] <= 20 * 3 and 5 <= f["tpot_p50_ms"] <= 5 * 3  # what the sim was told
    assert f["error_rate"] == 0 and f["running"] is not None and f["kv_cache_usage"] is not None
    bad = [r for r in fleet.replicas if not r.readable]
    assert [r.address for r in bad] == ["fleet.chat[2]"] and bad[0].error and bad[0].figures == {}
    assert fleet.unreadable == 1
    assert fleet.usd_per_1m_output_tokens == pytest.approx(9.0 / (f["output_tokens_per_s"] * 3600) * 1e6, rel=1e-3)
    families = {fam.name: fam for fam in text_string_to_metric_families(prometheus_text(report))}
    ups = {s.labels["replica"]: s.value for s in families["infraplan_replica_up"].samples}
    assert ups == {"fleet.chat[0]": 1.0, "fleet.chat[1]": 1.0, "fleet.chat[2]": 0.0}
    assert "infraplan_fleet_ttft_p50_ms" in families and "infraplan_fleet_usd_per_1m_output_tokens" in families


def test_the_cli_says_unreadable_and_prints_json(tmp_path, sims):
    db = tmp_path / "s.db"
    _state(db, [sims[0], "http://127.0.0.1:9"])
    r = run("status", "--state", str(db), "--window", "0.2s")
    assert r.exit_code == 0, r.output
    assert "fleet.chat[1]: unreadable (" in r.output and "1 of 2 replicas unreadable" in r.output
    assert "$9.00/h" in r.output
    r = run("status", "--state", str(db), "--window", "0.2s", "--json")
    doc = json.loads(r.output)
    assert doc["format_version"] == "1.0" and doc["fleets"][0]["unreadable"] == 1
    assert run("status", "--state", str(tmp_path / "none.db")).exit_code == 1
    r = run("status", "--state", str(db), "--window", "soon")
    assert r.exit_code == 1 and "--window soon" in r.output


def test_top_refreshes_every_window_until_ctrl_c(tmp_path, sims):
    """`infraplan top` is `status --watch`: a report per window, and Ctrl-C ends it cleanly."""
    import signal
    import subprocess
    import sys
    import time

    db = tmp_path / "s.db"
    _state(db, sims)
    proc = subprocess.Popen([sys.executable, "-m", "infraplan", "top", "--state", str(db), "--window", "0.3s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.count("(window ") >= 2 and "fleet.chat[1]:" in out and "Traceback" not in err


def test_an_empty_state_says_so(tmp_path):
    db = tmp_path / "s.db"
    _state(db, [])
    r = run("status", "--state", str(db), "--window", "0.1s")
    assert r.exit_code == 0 and "No replicas in state" in r.output, r.output

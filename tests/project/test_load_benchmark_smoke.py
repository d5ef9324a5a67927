"""benchmarks/load.py runs its scenarios, before and now, and writes its records (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.paths import BENCHMARKS

pytestmark = pytest.mark.e2e


def test_load_benchmark_short(tmp_path):
    out = tmp_path / "load.json"
    # HEAD as "before": the smoke test needs no particular commit in the clone
    done = subprocess.run([sys.executable, str(BENCHMARKS / "load.py"), "--seconds", "0.3", "--baseline", "HEAD",
                           "--scenarios", "client,sim-1client", "--json", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(out.read_text())
    assert {"cpu", "cores", "load_1m", "load_1m_after"} <= set(doc["machine"])
    assert [(r["scenario"], r["side"]) for r in doc["records"]] == [
        ("client", "before"), ("client", "now"), ("sim-1client", "before"), ("sim-1client", "now")]
    for r in doc["records"]:
        assert r["completed"] > 0 and r["failed"] == 0
        assert r["ttft_ms"] >= 20 * 0.95 and r["client_cpu_ms_per_request"] > 0 and r["sim_core_share"] > 0
    assert set(doc["verdicts"]) == {"client_cpu_ms_per_request", "client_ttft_ratio"}
    assert "| client | req/s |" in done.stdout and "client_cpu_ms_per_request" in done.stdout

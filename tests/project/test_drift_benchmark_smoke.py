"""benchmarks/drift_1000.py runs at a small size and writes its records (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.paths import BENCHMARKS

BENCH = BENCHMARKS / "drift_1000.py"
pytestmark = pytest.mark.e2e


def test_drift_benchmark_small(tmp_path):
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, str(BENCH), "--replicas", "20", "--hosts", "2", "--runs", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    records = json.loads(out.read_text())["records"]
    assert [r["step"] for r in records] == ["drift", "drift+orphans"]
    for r in records:
        assert r["checked"] == 20 and r["exit_code"] == 0 and sum(r["findings"].values()) == 0
        assert r["wall_s"] > r["drift_duration_s"] > 0

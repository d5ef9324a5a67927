"""The benchmark scripts run and write what the README documents (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.paths import BENCHMARKS

BENCH = BENCHMARKS
FIELDS = {"n", "step", "wall_s", "cpu_s", "peak_rss_mb"}


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=90)


def test_generate_shape_and_bump(tmp_path):
    out = tmp_path / "cfg"
    done = script("generate.py", "25", str(out), "--per-file", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    fleets = {}
    for f in sorted(out.glob("fleets-*.yaml")):
        fleets.update(yaml.safe_load(f.read_text())["fleet"])
    assert len(list(out.glob("fleets-*.yaml"))) == 3  # 5 fleets, 2 per file
    assert sorted(fleets) == [f"g{k}" for k in range(5)]
    assert {f["model"] for f in fleets.values()} == {f"model.v{v}" for v in range(4)}
    assert all(f["replicas"] == 4 and f["provider"] == "bench" for f in fleets.values())
    assert yaml.safe_load((out / "providers.yaml").read_text())["provider"]["bench"]["type"] == "null"

    before = yaml.safe_load((out / "models.yaml").read_text())["model"]
    assert script("generate.py", str(out), "--bump", "2", cwd=tmp_path).returncode == 0
    after = yaml.safe_load((out / "models.yaml").read_text())["model"]
    assert after["v2"]["revision"] != before["v2"]["revision"]
    assert {k: v for k, v in after.items() if k != "v2"} == {k: v for k, v in before.items() if k != "v2"}


def test_run_writes_documented_records(tmp_path):
    out = tmp_path / "results.json"
    done = script("run.py", "--sizes", "25", "--steps", "version,plan", "--json", str(out), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    assert {"cpu", "cores", "ram_gb", "python", "load_1m", "dont_write_bytecode"} <= set(data["machine"])
    assert data["machine"]["bytecode"] == "compiled before timing"
    steps = {(r["n"], r["step"]) for r in data["records"]}
    assert steps == {(0, "version"), (25, "plan")}
    for r in data["records"]:
        assert FIELDS <= set(r)
        assert r["wall_s"] > 0 and r["cpu_s"] >= 0 and r["peak_rss_mb"] > 1
    assert "plan" in done.stdout  # the table


def test_drift_found_is_a_result_not_a_failure(tmp_path):
    # bumping a model without applying: drift exits 2 (config and replicas differ)
    out = tmp_path / "results.json"
    done = script("run.py", "--sizes", "25", "--steps", "bump_plan,drift", "--no-compile", "--json", str(out),
                  "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    assert "--no-compile" in data["machine"]["bytecode"]
    drift = next(r for r in data["records"] if r["step"] == "drift")
    assert drift["drifted"] is True and "error" not in drift and drift["wall_s"] > 0


def test_ideal_makespan_formula():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    run = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = run  # dataclasses look their module up there
    try:
        spec.loader.exec_module(run)
    finally:
        del sys.modules["bench_run"]
    assert run.ideal_makespan(800, 1, 0.05, 10) == pytest.approx(4.0)  # throughput-bound
    assert run.ideal_makespan(4, 3, 0.05, 50) == pytest.approx(0.15)  # chain-bound


@pytest.mark.slow
def test_warm_plugin_benchmark_compares_warm_plans_with_cold_ones(tmp_path):
    from helpers.skypilot_plugin import CATALOGS as catalogs
    from helpers.skypilot_plugin import NEEDS_PLUGIN

    for mark in NEEDS_PLUGIN:  # their reasons, as every SkyPilot test gives them
        if mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    out = tmp_path / "warm.json"
    done = subprocess.run([sys.executable, str(BENCH / "warm_plugin.py"), "--runs", "1", "--no-sky",
                           "--catalogs", str(catalogs), "--json", str(out)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    body = json.loads(out.read_text())
    assert {r["step"] for r in body["records"]} == {"cold", "warm_start", "warm", "warm_changed"}
    assert body["summary"]["warm_plans_equal_cold"] is True
    assert body["summary"]["infraplan_chose"] == "aws p5.48xlarge[Spot] 14.25"

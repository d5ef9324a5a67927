"""The skypilot provider as a plugin: SkyPilot 0.14 in its own virtualenv, infraplan here.

Runs where `infraplan plugins install skypilot` has been done (`.ci/run` does it);
the real optimizer prices over the shared catalog rows inside the plugin process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infraplan.plugin import RemoteProvider, plugin_python, plugin_root
from infraplan.provider import ProviderContext, ReadResult
from infraplan_providers.skypilot.client import NoCapacity
from infraplan_providers.skypilot.provider import SkyPilotProvider

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = Path(os.environ.get("INFRAPLAN_SKY_CATALOGS", ROOT.parent / "shared" / "catalogs"))

pytestmark = [
    pytest.mark.skipif(plugin_python("skypilot") is None,
                       reason="skypilot plugin not installed (infraplan plugins install skypilot)"),
    pytest.mark.skipif(not (CATALOGS / "v8").is_dir(), reason=f"shared SkyPilot catalogs not at {CATALOGS}"),
]


@pytest.fixture
def sky_env(tmp_path, monkeypatch):
    """What the catalogs' README asks for, in the environment the plugin process inherits."""
    runtime = tmp_path / "sky-runtime"
    shutil.copytree(CATALOGS / "v8", runtime / ".sky" / "catalogs" / "v8")
    (runtime / "home").mkdir()
    monkeypatch.setenv("INFRAPLAN_PLUGIN_DIR", str(plugin_root()))  # fixed before HOME moves
    monkeypatch.setenv("SKY_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HOME", str(runtime / "home"))
    return runtime


def test_multicloud_example_plans_through_the_plugin_with_real_prices(sky_env, tmp_path):
    cfg = tmp_path / "cfg"
    shutil.copytree(ROOT / "examples" / "multicloud", cfg, ignore=shutil.ignore_patterns("*.db", ".infraplan"))
    main = cfg / "main.yaml"
    main.write_text(main.read_text().replace("    type: skypilot\n", "    type: skypilot\n    isolation: plugin\n"))
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-m", "infraplan", "plan", str(cfg), "--refresh=false", "--json",
                           "--state", str(tmp_path / "s.db")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    fleet = next(c for c in plan["changes"] if c["address"] == "fleet.chat")
    unit = fleet["cost"]["unit"]
    assert (unit["cloud"], unit["region"], unit["instance_type"], unit["use_spot"]) == \
        ("aws", "us-east-1", "p5.48xlarge", True)
    assert fleet["cost"]["hourly"] == pytest.approx(2 * 14.246)
    assert fleet["cost"]["hourly_on_demand"] == pytest.approx(2 * 55.04)
    assert [(f["cloud"], f["use_spot"]) for f in unit["failover"]] == \
        [("aws", True), ("gcp", True), ("aws", False), ("gcp", False)]
    assert fleet["cost"]["fit"]["status"] in ("fits", "tight")
    assert unit["controller"]["instance_type"] == "m6i.xlarge"
    assert plan["cost"]["after_hourly"] == pytest.approx(2 * 14.246 + 0.192)
    log = tmp_path / ".infraplan" / "s" / "plugins" / "skypilot.log"
    assert log.exists(), "the plugin process ran and kept its log beside the state"


ATTRS = {"fleet": "fleet.chat", "index": 1, "model_source": "hf://org/m", "model_revision": "r1",
         "served_name": "m", "accelerators": "H100:8", "cloud": "aws", "region": "us-east-1", "args": {}}


def _remote(tmp_path) -> RemoteProvider:
    ctx = ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path / "rt",
                          settings={"idle_minutes_to_autostop": 30, "retries": 1}, name="sky")
    return RemoteProvider(SkyPilotProvider, ctx, "skypilot")


def test_cluster_lifecycle_through_the_plugin_with_the_sdk_faked_there(sky_env, tmp_path, monkeypatch):
    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(Path(__file__).with_name("fake_preload.py")))
    p = _remote(tmp_path)
    try:
        assert p.hello()["versions"]["skypilot"].startswith("0.14.")
        out = p.create("fleet.chat[1]", dict(ATTRS))
        assert out["cluster_name"] == "infraplan-chat-1" and out["endpoint"] == "http://3.1.2.3:30000"
        assert (out["cloud_chosen"], out["instance_type_chosen"]) == ("aws", "p5.48xlarge")
        got = p.read("fleet.chat[1]", out)
        assert isinstance(got, ReadResult) and got.exists and got.healthy
        p.delete("fleet.chat[1]", out)
        assert not p.read("fleet.chat[1]", out).exists
    finally:
        p.close()


def test_skypilot_errors_cross_the_process_boundary_as_infraplan_errors(sky_env, tmp_path, monkeypatch):
    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(Path(__file__).with_name("fake_preload.py")))
    monkeypatch.setenv("FAKE_SKY_FAIL", "no_capacity")
    p = _remote(tmp_path)
    try:
        with pytest.raises(NoCapacity, match="InsufficientInstanceCapacity") as info:
            p.create("fleet.chat[1]", dict(ATTRS))
        assert len(info.value.failover_history) == 1
    finally:
        p.close()

"""The SkyPilot plugin kept warm: the same plans as a one-shot worker, fresh catalogs, no state shared.

The installed plugin virtualenv (SkyPilot 0.14) is mirrored into the test's own plugin folder,
so the warm worker's run folder stays there; plans run the CLI in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infraplan.models.kinds import ResourceKind
from infraplan.providers.contract import ProviderContext
from infraplan.providers.plugin import warm
from infraplan.providers.plugin.host import RemoteProvider, plugin_dir
from infraplan_providers.skypilot.provider import SkyPilotProvider

from helpers.fixtures import stop_warm_workers
from helpers.paths import REPO
from helpers.plugins import mirror_plugin_venv
from helpers.skypilot_plugin import NEEDS_PLUGIN, sky_environment

pytestmark = NEEDS_PLUGIN


@pytest.fixture
def sky_warm(tmp_path, monkeypatch):
    """SkyPilot's environment over the catalogs (`sky_environment`), the plugin mirrored under tmp_path,
    warm workers on."""
    env = sky_environment(tmp_path)
    root = tmp_path / "plugins"
    mirror_plugin_venv(root, "skypilot", plugin_dir("skypilot"))
    for k, v in dict(env, INFRAPLAN_PLUGIN_DIR=str(root)).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("INFRAPLAN_PLUGIN_KEEP", "1")
    monkeypatch.setenv("INFRAPLAN_PLUGIN_IDLE", "60")
    monkeypatch.delenv("INFRAPLAN_PLUGIN_PRELOAD", raising=False)
    monkeypatch.chdir(tmp_path)
    yield Path(env["SKY_RUNTIME_DIR"])
    stop_warm_workers()


def example(tmp_path: Path, name: str = "cfg") -> Path:
    cfg = tmp_path / name
    shutil.copytree(REPO / "examples" / "multicloud", cfg, ignore=shutil.ignore_patterns("*.db", ".infraplan"))
    main = cfg / "main.yaml"
    main.write_text(main.read_text().replace("    type: skypilot\n", "    type: skypilot\n    isolation: plugin\n"))
    return cfg


def plan(cfg: Path, state: Path, keep: str = "1") -> dict:
    env = dict(os.environ, NO_COLOR="1", INFRAPLAN_PLUGIN_KEEP=keep)
    proc = subprocess.run([sys.executable, "-m", "infraplan", "plan", str(cfg), "--refresh=false", "--json",
                           "--state", str(state)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    out.pop("created_at")
    return out


def fleet_cost(p: dict, address: str = "fleet.chat") -> dict:
    return next(c for c in p["changes"] if c["address"] == address)["cost"]


def one_worker() -> dict:
    (entry,) = warm.workers(["skypilot"])
    assert entry.status is not None
    return entry.status


def test_a_warm_plan_is_the_cold_plan(sky_warm, tmp_path):
    cfg = example(tmp_path)
    cold = plan(cfg, tmp_path / "s.db", keep="0")
    assert warm.workers(["skypilot"]) == []  # one-shot: nothing left running
    first = plan(cfg, tmp_path / "s.db")  # starts the worker
    second = plan(cfg, tmp_path / "s.db")  # served warm, estimates remembered
    assert first == cold and second == cold
    assert fleet_cost(second)["unit"]["instance_type"] == "p5.48xlarge"
    status = one_worker()
    assert status["sessions_served"] == 2 and status["open_sessions"] == 0


def test_a_changed_catalog_is_picked_up(sky_warm, tmp_path):
    cfg = example(tmp_path)
    before = plan(cfg, tmp_path / "s.db")
    assert fleet_cost(before)["unit"]["cloud"] == "aws"
    old = one_worker()["pid"]
    vms = sky_warm / ".sky" / "catalogs" / "v8" / "aws" / "vms.csv"
    vms.write_text("".join(line for line in vms.read_text().splitlines(keepends=True)
                           if not line.startswith("p5.48xlarge,")))  # AWS has no H100:8 any more
    after = plan(cfg, tmp_path / "s.db")
    unit = fleet_cost(after)["unit"]
    assert (unit["cloud"], unit["instance_type"]) == ("gcp", "a3-highgpu-8g")
    assert [f["cloud"] for f in unit["failover"]] == ["gcp"]
    assert after == plan(cfg, tmp_path / "s.db", keep="0")
    assert any(e.status and e.status["pid"] != old for e in warm.workers(["skypilot"]))  # a fresh worker read them


NO_CLOUD = """\
provider:
  sky:
    type: skypilot
    isolation: plugin
    settings: {SETTINGS}
model:
  m: {source: hf://org/m, revision: r1, served_name: m}
fleet:
  chat: {provider: sky, model: model.m, replicas: 1, accelerators: H100:8}
"""


def test_two_workspaces_through_one_worker_keep_their_own_settings_and_state(sky_warm, tmp_path):
    from infraplan.state import StateStore

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "main.yaml").write_text(NO_CLOUD.replace("{SETTINGS}", "{}"))
    (b / "main.yaml").write_text(NO_CLOUD.replace("{SETTINGS}", "{plan_clouds: [gcp]}"))
    first_a = plan(a, a / "s.db")
    with StateStore(a / "s.db") as store:  # workspace a has its replica; b has nothing
        (c,) = [c for c in first_a["changes"] if c["kind"] == "replica"]
        store.put(c["address"], kind="replica", provider="sky", dependencies=c["dependencies"],
                  attributes=dict(c["after"], cluster_name="infraplan-chat-0", status="running"))
    plan_a, plan_b = plan(a, a / "s.db"), plan(b, b / "s.db")
    assert fleet_cost(plan_a)["unit"]["cloud"] == "runpod"  # the cheapest H100:8 of the four clouds
    assert fleet_cost(plan_b)["unit"]["cloud"] == "gcp"  # b's plan_clouds, not a's remembered answer
    actions = lambda p: sorted(c["action"] for c in p["changes"] if c["kind"] == "replica")  # noqa: E731
    assert actions(plan_a) == ["noop"] and actions(plan_b) == ["create"]
    assert one_worker()["sessions_served"] == 3


COUNT_OPTIMIZER = """\
import os
from infraplan_providers.skypilot import pricing
real = pricing.optimize
def counted(attrs, settings):
    with open(os.environ["OPTIMIZER_CALLS"], "a") as f:
        f.write(attrs["accelerators"] + "\\n")
    return real(attrs, settings)
pricing.optimize = counted
"""


def test_the_optimizer_runs_once_per_resources_and_catalogs(sky_warm, tmp_path, monkeypatch):
    preload = tmp_path / "count.py"
    preload.write_text(COUNT_OPTIMIZER)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(preload))
    monkeypatch.setenv("OPTIMIZER_CALLS", str(calls))
    attrs = {"fleet": "fleet.chat", "index": 0, "accelerators": "H100:8", "cloud": "aws", "region": "us-east-1"}

    def estimate(accelerators: str, state: str) -> dict:
        ctx = ProviderContext(project_dir=tmp_path, state_path=tmp_path / state, runtime_dir=tmp_path / "rt",
                              name="sky")
        p = RemoteProvider.connect(SkyPilotProvider, ctx, "skypilot")
        try:
            assert isinstance(p.process, warm.WarmSession)
            return p.estimate(ResourceKind.REPLICA, dict(attrs, accelerators=accelerators))
        finally:
            p.close()

    first = estimate("H100:8", "a.db")
    assert estimate("H100:8", "b.db") == first  # another session, another state: remembered
    assert calls.read_text().split() == ["H100:8"]
    assert estimate("A100-80GB:8", "a.db")["instance_type"] == "p4de.24xlarge"  # other resources: optimized
    assert calls.read_text().split() == ["H100:8", "A100-80GB:8"]

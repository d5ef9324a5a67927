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

from infraplan.providers.plugin.host import RemoteProvider
from infraplan.providers.contract import ProviderContext, ResourceKind
from infraplan_providers.skypilot.provider import SkyPilotProvider

from helpers.paths import HELPERS, REPO
from helpers.skypilot_plugin import NEEDS_PLUGIN

ROOT = REPO

pytestmark = NEEDS_PLUGIN


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
    # SkyServe runs spot only; on-demand comes from its replica policy (dynamic_ondemand_fallback),
    # priced as hourly_on_demand, not as a mixed resource list `sky serve up` would refuse
    assert [(f["cloud"], f["use_spot"]) for f in unit["failover"]] == [("aws", True), ("gcp", True)]
    assert fleet["cost"]["fit"]["status"] in ("fits", "tight")
    assert unit["controller"]["instance_type"] == "m6i.xlarge"
    assert plan["cost"]["after_hourly"] == pytest.approx(2 * 14.246 + 0.192)
    log = tmp_path / ".infraplan" / "s" / "plugins" / "skypilot.log"
    assert log.exists(), "the plugin process ran and kept its log beside the state"


REPLICA = ResourceKind.REPLICA
ATTRS = {"fleet": "fleet.chat", "index": 1, "model_source": "hf://org/m", "model_revision": "r1",
         "served_name": "m", "accelerators": "H100:8", "cloud": "aws", "region": "us-east-1", "args": {}}


def _remote(tmp_path) -> RemoteProvider:
    ctx = ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path / "rt",
                          settings={"idle_minutes_to_autostop": 30}, name="sky")
    return RemoteProvider.connect(SkyPilotProvider, ctx, "skypilot")


def test_one_retry_owner_a_failing_launch_is_submitted_three_times_not_nine(sky_env, tmp_path, monkeypatch):
    """The SkyPilot client raises a transient error once; the engine's executor retries (3 attempts)."""
    import tenacity

    from infraplan.apply.executor import Executor
    from infraplan.errors import TransientProviderError

    calls = tmp_path / "calls.jsonl"

    def launches() -> int:
        return sum(json.loads(line)["call"] == "launch" for line in calls.read_text().splitlines())

    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(HELPERS / "fake_preload.py"))
    monkeypatch.setenv("FAKE_SKY_FAIL", "transient")
    monkeypatch.setenv("FAKE_SKY_CALLS", str(calls))
    monkeypatch.setattr(tenacity.nap, "sleep", lambda _s: None)
    p = _remote(tmp_path)
    try:
        with pytest.raises(TransientProviderError, match="ApiServerConnectionError"):
            p.create(ResourceKind.REPLICA, "fleet.chat[1]", dict(ATTRS))
        assert launches() == 1  # the client alone: one request
        calls.unlink()
        with pytest.raises(TransientProviderError):
            Executor(store=None, providers=None)._call(("create", p, REPLICA, "fleet.chat[1]", dict(ATTRS)))
        assert launches() == 3
    finally:
        p.close()


CANARY_CFG = """\
variable:
  rev: {type: string, default: r1}
  replicas: {type: number, default: 2}
provider:
  sky: {type: skypilot, isolation: plugin}
model:
  m: {source: hf://org/m, revision: "${var.rev}", served_name: m}
fleet:
  chat:
    provider: sky
    model: model.m
    replicas: ${var.replicas}
    accelerators: H100:1
    cloud: aws
    region: us-east-1
    placement: service
    rollout: {strategy: canary, steps: [25, 50, 100]}
"""
ROUTER = "router:\n  front: {fleets: [fleet.chat]}\n"


def _plan(cfg: Path, state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infraplan", "plan", str(cfg), "--refresh=false", "--state",
                           str(state), *args], env=dict(os.environ, NO_COLOR="1"), capture_output=True, text=True,
                          timeout=120)


def _applied_v1(tmp_path, router: bool) -> tuple[Path, Path]:
    """The r1 fleet recorded in state as SkyServe made it (a plan's attributes plus what apply computes)."""
    from infraplan.state import StateStore

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "main.yaml").write_text(CANARY_CFG + (ROUTER if router else ""))
    state = tmp_path / "s.db"
    proc = _plan(cfg, state, "--json")
    assert proc.returncode == 0, proc.stderr
    with StateStore(state) as store:
        for c in json.loads(proc.stdout)["changes"]:
            if c["kind"] == "replica":
                attrs = dict(c["after"], service_name="infraplan-chat", endpoint="http://44.1.2.3:30001",
                             status="running", service_version=1)
                store.put(c["address"], kind="replica", provider="sky", attributes=attrs,
                          dependencies=c["dependencies"])
    return cfg, state


@pytest.mark.slow
def test_a_skyserve_canary_is_planned_as_a_separate_service_behind_the_router(sky_env, tmp_path):
    cfg, state = _applied_v1(tmp_path, router=True)
    proc = _plan(cfg, state, "--json", "--var", "rev=r2")
    assert proc.returncode == 0, proc.stderr
    changes = {c["address"]: c for c in json.loads(proc.stdout)["changes"]}
    assert changes["fleet.chat[0]"]["action"] == "update" and changes["fleet.chat[0]"]["rolls_out"]
    fleet = changes["fleet.chat"]
    line = next(r for r in fleet["reasons"] if r.startswith("rollout: "))
    assert "through router.front" in line and "separate service infraplan-chat-canary (2 replicas)" in line
    assert "really 33.3%, 50%, 100%" in line  # 2 + 2 replicas cannot give 25%
    assert fleet["cost"]["canary_service"] == {"replicas": 2, "extra_hourly": pytest.approx(fleet["cost"]["hourly"])}
    text = _plan(cfg, state, "--var", "rev=r2").stdout
    assert "canary service (2 replicas of the new version) while the canary runs: +$" in text


@pytest.mark.slow
def test_a_skyserve_canary_needs_a_router_and_an_unchanged_replica_count(sky_env, tmp_path):
    cfg, state = _applied_v1(tmp_path, router=False)
    proc = _plan(cfg, state, "--var", "rev=r2")
    assert proc.returncode == 1 and "no router fronts fleet.chat" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    (cfg / "main.yaml").write_text(CANARY_CFG + ROUTER)
    proc = _plan(cfg, state, "--var", "rev=r2", "--var", "replicas=3")
    assert proc.returncode == 1 and "cannot also change its replicas (fleet.chat[2])" in proc.stderr + proc.stdout
    proc = _plan(cfg, state, "--var", "replicas=3")  # the replica change alone is fine
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow  # over 10 s of real processes: the test command's second step
def test_a_router_on_skypilot_runs_smg_and_takes_traffic(sky_env, tmp_path, monkeypatch):
    """The router VM's run command really runs (here, through the fake's local mode): smg
    with its control plane guarded by the key from the environment, workers registered
    through /workers, chat requests proxied to a sim."""
    import socket
    import threading

    import httpx

    from infraplan.serving.sim import SimConfig, make_server

    pytest.importorskip("smg")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(HELPERS / "fake_preload.py"))
    monkeypatch.setenv("FAKE_SKY_RUN_LOCAL", "1")
    monkeypatch.setenv("FAKE_SKY_PATH", str(Path(sys.executable).parent))
    monkeypatch.setenv("INFRAPLAN_ROUTER_ADMIN_KEY", "s3cret-key")
    sim = make_server(SimConfig(model_path="org/tiny", served_model_name="tiny", port=0))
    threading.Thread(target=sim.serve_forever, daemon=True).start()
    worker = f"http://127.0.0.1:{sim.server_address[1]}"
    ctx = ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path / "rt", name="sky",
                          settings={"router_port": port, "router_infra": "aws/us-east-1", "poll_s": 0.2,
                                    "router_ready_timeout_s": 60})
    p = RemoteProvider.connect(SkyPilotProvider, ctx, "skypilot")
    attrs = {"kind": "router", "policy": "round_robin", "port": None, "labels": {}, "worker_sets": [[worker]],
             "retries": {"enabled": False}}
    try:
        est = p.estimate(ResourceKind.ROUTER, attrs)
        assert est["cloud"] == "aws" and est["region"] == "us-east-1" and est["hourly"] > 0
        out = p.create(ResourceKind.ROUTER, "router.gateway", dict(attrs))
        assert out["cluster_name"] == "infraplan-router-gateway" and out["endpoint"] == f"http://127.0.0.1:{port}"
        assert out["workers"] == [worker] and out["admin_key_env"] == "INFRAPLAN_ROUTER_ADMIN_KEY"
        assert "s3cret-key" not in json.dumps(out)  # the key's name is kept, never the key
        with httpx.Client(base_url=out["endpoint"], timeout=10, trust_env=False) as http:
            assert http.get("/workers").status_code == 401  # the control plane needs the key
            r = http.post("/v1/chat/completions", json={"model": "tiny", "max_tokens": 4,
                                                         "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and r.json()["choices"]
        got = p.read(ResourceKind.ROUTER, "router.gateway", out)
        assert got.exists and got.healthy and got.attributes["workers"] == [worker]
        emptied = p.update(ResourceKind.ROUTER, "router.gateway", out, dict(attrs, worker_sets=[[]]))
        assert emptied["workers"] == []
        p.delete(ResourceKind.ROUTER, "router.gateway", emptied)
        assert not p.read(ResourceKind.ROUTER, "router.gateway", emptied).exists
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{out['endpoint']}/health", timeout=2, trust_env=False)
    finally:
        p.close()
        sim.shutdown()
        _kill_listener(port)


def _kill_listener(port: int) -> None:
    """A router left by a failed test (smg renames its process, so it is found by its port)."""
    import psutil

    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            psutil.Process(conn.pid).kill()


def test_a_router_on_skypilot_is_priced_in_the_plan(sky_env, tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "main.yaml").write_text(CANARY_CFG.replace(
        "  sky: {type: skypilot, isolation: plugin}",
        "  sky: {type: skypilot, isolation: plugin, settings: {router_infra: aws/us-east-1}}")
        + "router:\n  front: {provider: sky, fleets: [fleet.chat]}\n")
    proc = _plan(cfg, tmp_path / "s.db", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    (router,) = [x for x in plan["cost"]["shared"] if x["key"] == "router.front"]
    assert (router["cloud"], router["region"]) == ("aws", "us-east-1") and router["hourly"] > 0
    fleets = sum(c["cost"]["hourly"] for c in plan["changes"] if c["kind"] == "fleet")
    controller = sum(x["hourly"] for x in plan["cost"]["shared"] if x["key"] != "router.front")
    assert plan["cost"]["after_hourly"] == pytest.approx(fleets + controller + router["hourly"])
    text = _plan(cfg, tmp_path / "s.db").stdout
    assert "router.front: router VM (smg, 2+ vCPUs): $" in text


E2E_CFG = """\
variable:
  rev: {type: string, default: r1}
  err: {type: string, default: "0"}
provider:
  sky:
    type: skypilot
    isolation: plugin
    settings: {poll_s: 0.2, timeout_s: 120, router_infra: aws/us-east-1, router_port: ROUTER_PORT}
model:
  m: {source: hf://org/tiny, revision: "${var.rev}", served_name: tiny}
fleet:
  chat:
    provider: sky
    model: model.m
    replicas: 2
    accelerators: H100:1
    cloud: aws
    region: us-east-1
    placement: service
    engine: {type: sglang, env: {SIM_ERROR_RATE: "${var.err}"}}
    rollout:
      strategy: canary
      steps: [50, 100]
      readiness_timeout_s: 30
      analysis:
        window_s: 1.5
        min_requests: 5
        load_concurrency: 4
        gates: [{metric: error_rate, max: 0.05}]
router:
  gateway: {provider: sky, fleets: [fleet.chat], policy: round_robin, retries: {enabled: false}}
"""


class RouterLoad:
    """Chat requests to the router, one at a time, all along; who served each failure."""

    def __init__(self, url: str):
        import threading

        self.url, self.sent, self.failed = url, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=10, trust_env=False) as http:
            while not self.stop.is_set():
                try:
                    r = http.post("/v1/chat/completions", json={"model": "tiny", "max_tokens": 2,
                                                                 "messages": [{"role": "user", "content": "hi"}]})
                    if r.status_code != 200:
                        self.failed.append(r.headers.get("x-smg-routed-worker-id") or f"HTTP {r.status_code}")
                except httpx.HTTPError as exc:
                    self.failed.append(f"{type(exc).__name__}: {exc}")
                self.sent += 1

    def counts(self) -> tuple[int, int]:
        return self.sent, len(self.failed)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_skyserve_canary_end_to_end_through_the_cli(sky_env, tmp_path, monkeypatch):
    """The CLI, the plugin, real processes: a SkyServe fleet (the fake SDK runs each service as
    sims behind an smg load balancer) behind a router on SkyPilot (the fake runs its VM's smg
    here, control plane keyed), under constant load. A good version is promoted with no failed
    request; a bad one is rolled back at its first step with failures only from the canary
    service, and then refused."""
    import time

    import httpx

    from infraplan.state import StateStore

    pytest.importorskip("smg")
    started = time.monotonic()
    services = tmp_path / "fake-services.json"
    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(HELPERS / "fake_preload.py"))
    monkeypatch.setenv("FAKE_SKY_RUN_LOCAL", "1")
    monkeypatch.setenv("FAKE_SKY_STATE", str(services))
    monkeypatch.setenv("FAKE_SKY_PATH", str(Path(sys.executable).parent))
    monkeypatch.setenv("INFRAPLAN_ROUTER_ADMIN_KEY", "e2e-key")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        router_port = sock.getsockname()[1]
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "main.yaml").write_text(E2E_CFG.replace("ROUTER_PORT", str(router_port)))
    state = tmp_path / "s.db"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "infraplan", *args, str(cfg), "--state", str(state)],
                              env=dict(os.environ, NO_COLOR="1"), capture_output=True, text=True, timeout=240)

    load = None
    try:
        up = cli("apply", "--auto-approve")
        assert up.returncode == 0, up.stdout + up.stderr
        with StateStore(state) as s:
            router = s.get("router.gateway").attributes["endpoint"]
            lb = s.get("fleet.chat[0]").attributes["endpoint"]
        assert json.loads(services.read_text())["infraplan-chat"]["version"] == 1
        assert router == f"http://127.0.0.1:{router_port}"
        assert httpx.get(f"{router}/workers", trust_env=False).status_code == 401  # keyed control plane
        load = RouterLoad(router)

        good = cli("apply", "--auto-approve", "--var", "rev=r2")
        assert good.returncode == 0, good.stdout + good.stderr
        sent, failed = load.counts()
        assert sent > 20 and failed == 0, load.failed
        svc = json.loads(services.read_text())
        assert set(svc) == {"infraplan-chat"} and svc["infraplan-chat"]["version"] == 2  # promoted; canary gone
        assert [httpx.get(f"http://127.0.0.1:{r['port']}/server_info", trust_env=False).json()["revision"]
                for r in svc["infraplan-chat"]["replicas"]] == ["r2", "r2"]
        with StateStore(state) as s:
            assert s.get("fleet.chat[1]").attributes["model_revision"] == "r2"
            assert not [r for r in s.resources() if r.deposed]
            assert s.get("router.gateway").attributes["workers"] == [lb]

        bad = cli("apply", "--auto-approve", "--var", "rev=r3", "--var", "err=0.5")
        out = bad.stdout + bad.stderr
        assert bad.returncode != 0 and "rolled back" in out and "error_rate" in out, out
        sent3, failed3 = load.counts()
        assert sent3 - sent > 20
        with StateStore(state) as s:
            steps = [e.details for e in s.audit_log() if e.event == "rollout-step"]
        canary = next(d["workers"] for d in steps if d["step"] == "canary-service")  # the newest: r3's
        assert failed3 > 0 and set(load.failed) <= set(canary), (load.failed, canary)
        assert failed3 <= 0.5 * (sent3 - sent)  # never more than the canary's share (50% at the first step)
        svc = json.loads(services.read_text())
        assert set(svc) == {"infraplan-chat"} and svc["infraplan-chat"]["version"] == 2  # never touched
        with StateStore(state) as s:
            assert s.get("fleet.chat[0]").attributes["model_revision"] == "r2"
            assert s.get("router.gateway").attributes["workers"] == [lb]
            assert len(s.rollbacks("fleet.chat")) == 1
        refused = cli("plan", "--var", "rev=r3", "--var", "err=0.5")
        assert refused.returncode == 1 and "was rolled back" in refused.stdout + refused.stderr
        load.close()
        print(f"\nSkyServe canary e2e: good version {sent} requests, 0 failed; bad version "
              f"{sent3 - sent} requests, {failed3} failed, all from the canary service "
              f"({time.monotonic() - started:.0f}s so far)")
        gone = cli("destroy", "--auto-approve")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert json.loads(services.read_text()) == {}
    finally:
        if load is not None:
            load.close()
        for svc in (json.loads(services.read_text()) if services.exists() else {}).values():
            for pid in [svc["lb"]["pid"], *(r["pid"] for r in svc["replicas"])]:
                try:
                    os.killpg(pid, 15)
                except ProcessLookupError:
                    pass
        if state.exists():
            cli("destroy", "--auto-approve")
        _kill_listener(router_port)


@pytest.mark.slow
def test_a_skyserve_update_says_what_of_the_rollout_block_it_cannot_do(sky_env, tmp_path):
    cfg, state = _applied_v1(tmp_path, router=False)
    main = cfg / "main.yaml"
    main.write_text(main.read_text().replace(
        "rollout: {strategy: canary, steps: [25, 50, 100]}",
        "rollout: {strategy: blue_green, rollback_window: 10m, golden_prompts: [{prompt: hi, contains: [h]}]}"))
    proc = _plan(cfg, state, "--var", "rev=r2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "rollout: SkyServe blue_green update of the service" in out
    assert "the golden prompts and analysis gates are not run" in out
    assert "rollback_window 10m does not apply" in out
    quiet = _plan(cfg, state, "--var", "replicas=3")  # nothing rolls out: nothing to warn about
    assert "gates are not run" not in quiet.stdout + quiet.stderr


@pytest.mark.slow
def test_a_skyserve_fleet_without_a_rollout_block_says_skyserves_own_mode_and_only_when_it_redeploys(
        sky_env, tmp_path):
    cfg, state = _applied_v1(tmp_path, router=False)
    main = cfg / "main.yaml"
    main.write_text(main.read_text().replace("    rollout: {strategy: canary, steps: [25, 50, 100]}\n",
                                             "    labels: {team: \"${var.rev}\"}\n"))
    new_version = json.loads(_plan(cfg, state, "--json", "--var", "rev=r2").stdout)
    fleet = next(c for c in new_version["changes"] if c["address"] == "fleet.chat")
    assert "rollout: SkyServe rolling update of the service (sky.serve.update, mode rolling)" in fleet["reasons"]
    (cfg / "main.yaml").write_text(main.read_text().replace('revision: "${var.rev}"', "revision: r1"))
    labels_only = json.loads(_plan(cfg, state, "--json", "--var", "rev=r2").stdout)
    fleet = next(c for c in labels_only["changes"] if c["address"] == "fleet.chat")
    assert not [r for r in fleet["reasons"] if r.startswith("rollout:")]
    assert not any(c["rolls_out"] for c in labels_only["changes"])


LINEAGE = "5f1c0d2e9a7b4c3d8e6f0a1b2c3d4e5f"


def test_drift_finds_an_orphaned_skypilot_cluster_through_the_plugin(sky_env, tmp_path, monkeypatch):
    """Clusters the provider launched carry this state's lineage; `list_instances` (through the
    plugin) finds the one no state records as an orphan, ignores the state's own and another
    state's, and `delete_instance` takes it down."""
    from infraplan.drift.orphans import list_orphans, orphan_findings
    from infraplan.models.config import ProviderBlock
    from infraplan.providers.registry import ProviderSet
    from infraplan.state.store import ResourceRecord, StateSnapshot

    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(HELPERS / "fake_preload.py"))
    monkeypatch.setenv("FAKE_SKY_STATE", str(tmp_path / "fake.json"))  # clusters shared across the workers
    other = ProviderContext(project_dir=tmp_path, state_path=tmp_path / "o.db", runtime_dir=tmp_path / "ort",
                            name="sky", lineage="0" * 32)
    p = RemoteProvider.connect(SkyPilotProvider, other, "skypilot")
    try:
        p.create(REPLICA, "fleet.chat[0]", dict(ATTRS, index=0))  # another project's cluster
    finally:
        p.close()
    providers = ProviderSet({"sky": ProviderBlock(type="skypilot", isolation="plugin")}, project_dir=tmp_path,
                            state_path=tmp_path / "s.db", lineage=LINEAGE)
    try:
        sky = providers.get("sky")
        kept = sky.create(REPLICA, "fleet.chat[1]", dict(ATTRS, index=1))
        sky.create(REPLICA, "fleet.chat[2]", dict(ATTRS, index=2))  # its state record was lost
        rec = ResourceRecord("fleet.chat[1]", "", "replica", "sky", "ready", kept, None, [], None, "t", "t")
        snap = StateSnapshot(LINEAGE, 3, [rec])
        findings, listed, errors = orphan_findings(snap, providers, {"sky"}, [], timeout=60)
        assert errors == [] and listed == 2
        assert [(f.kind, f.instance_id) for f in findings] == [("orphaned", "infraplan-chat-2")]
        assert findings[0].resource["address"] == "fleet-chat-2"
        (inst, lister), = list_orphans(snap, providers, {"sky"}, [], timeout=60)[0]
        lister.delete_instance(inst)
        assert [i.instance_id for i in sky.list_instances()] == ["infraplan-chat-1"]
    finally:
        providers.close()

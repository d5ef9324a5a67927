"""A fleet behind the real SGLang Model Gateway (smg), end to end with real processes."""

from __future__ import annotations

import collections
import threading
import time

import httpx
import pytest

pytest.importorskip("smg")

from infraplan.state import StateStore  # noqa: E402
from infraplan.workspace import Workspace  # noqa: E402

pytestmark = pytest.mark.e2e

CONFIG = """
variable:
  revision: {type: string, default: r1}
  replicas: {type: number, default: 2}
model:
  m: {source: hf://org/tiny, revision: "${var.revision}", served_name: tiny}
fleet:
  a:
    model: model.m
    replicas: ${var.replicas}
    engine: {type: sim, sim: {ttft_ms: 1, tpot_ms: 1}}
router:
  gw: {fleets: [fleet.a], policy: round_robin}
output:
  endpoint: {value: "${router.gw.endpoint}"}
"""
MAX_LOAD_REQUESTS = 3000


def chat(client: httpx.Client, endpoint: str) -> httpx.Response:
    return client.post(f"{endpoint}/v1/chat/completions", json={
        "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})


def records(ws: Workspace) -> dict:
    return {r.address: r for r in StateStore.open_readonly(ws.state_path).snapshot().resources if not r.deposed}


@pytest.fixture
def project(tmp_path, leftover_routers, leftover_servers):
    (tmp_path / "main.yaml").write_text(CONFIG)
    yield tmp_path
    ws = Workspace(tmp_path)
    if ws.state_path.exists():
        ws.apply(ws.plan(_destroy()))


def _destroy():
    from infraplan.plan.planner import PlanOptions

    return PlanOptions(destroy=True)


@pytest.mark.slow  # over 10 s of real processes: the test command's second step
def test_router_swaps_workers_during_a_rollout_without_failed_requests(project, leftover_routers, leftover_servers):
    ws = Workspace(project)
    result = ws.apply(ws.plan())
    assert result.ok, result.failed
    recs = records(ws)
    endpoint = ws.snapshot().outputs["endpoint"]
    assert endpoint == recs["router.gw"].attributes["endpoint"]
    old = sorted(recs[f"fleet.a[{i}]"].attributes["endpoint"] for i in (0, 1))
    assert sorted(recs["router.gw"].attributes["workers"]) == old
    assert len(leftover_routers()) == 1

    # requests through the router succeed and reach both replicas (smg names the worker it used)
    with httpx.Client(timeout=10, trust_env=False) as client:
        served = collections.Counter()
        for _ in range(6):
            r = chat(client, endpoint)
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
            served[r.headers["x-smg-routed-worker-id"]] += 1
    assert sorted(served) == old and all(n == 3 for n in served.values())

    # nothing to do now
    assert all(c.action == "noop" for c in ws.plan().changes)

    # a new revision: replicas replaced create-before-destroy while traffic flows through the router
    ws2 = Workspace(project, var_args=["revision=r2"])
    plan = ws2.plan()
    actions = {c.address: c.action for c in plan.changes}
    assert actions["fleet.a[0]"] == actions["fleet.a[1]"] == "replace"
    assert actions["router.gw"] == "update"
    stop = threading.Event()
    outcomes: collections.Counter = collections.Counter()
    workers_seen: collections.Counter = collections.Counter()

    def load() -> None:
        with httpx.Client(timeout=10, trust_env=False) as client:
            while not stop.is_set() and sum(outcomes.values()) < MAX_LOAD_REQUESTS:
                try:
                    r = chat(client, endpoint)
                    outcomes[r.status_code] += 1
                    workers_seen[r.headers.get("x-smg-routed-worker-id")] += 1
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1

    events: list[tuple[str, str, str]] = []
    thread = threading.Thread(target=load)
    thread.start()
    try:
        result = ws2.apply(plan, on_event=lambda e: events.append((e["type"], e["op"], e["address"])))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert result.ok, result.failed
    assert set(outcomes) == {200}, dict(outcomes)
    assert sum(outcomes.values()) > 20  # the load really ran during the apply

    recs = records(ws2)
    new = sorted(recs[f"fleet.a[{i}]"].attributes["endpoint"] for i in (0, 1))
    assert set(new).isdisjoint(old)
    assert sorted(recs["router.gw"].attributes["workers"]) == new
    assert set(workers_seen) <= set(old) | set(new) and set(new) <= set(workers_seen)
    # the old replicas were stopped only after the router had dropped them
    router_done = events.index(("done", "update", "router.gw"))
    old_deletes = [i for i, e in enumerate(events) if e[:2] == ("start", "delete")]
    assert len(old_deletes) == 2 and min(old_deletes) > router_done
    with httpx.Client(timeout=10, trust_env=False) as client:
        held = sorted(w["url"] for w in client.get(f"{endpoint}/workers").json()["workers"])
        assert held == new
        assert {chat(client, endpoint).headers["x-smg-routed-worker-id"] for _ in range(4)} == set(new)
    assert all(c.action == "noop" for c in ws2.plan().changes)

    # destroy leaves no process
    assert ws2.apply(ws2.plan(_destroy())).ok
    assert leftover_routers() == [] and leftover_servers() == []
    assert records(ws2) == {}


def test_scale_down_drops_the_worker_from_the_router_before_stopping_it(project, leftover_routers, leftover_servers):
    ws = Workspace(project)
    assert ws.apply(ws.plan()).ok
    kept = records(ws)["fleet.a[0]"].attributes["endpoint"]
    ws1 = Workspace(project, var_args=["replicas=1"])
    events: list[tuple[str, str, str]] = []
    assert ws1.apply(ws1.plan(), on_event=lambda e: events.append((e["type"], e["op"], e["address"]))).ok
    assert events.index(("done", "update", "router.gw")) < events.index(("start", "delete", "fleet.a[1]"))
    recs = records(ws1)
    assert recs["router.gw"].attributes["workers"] == [kept]
    assert recs["fleet.a"].attributes["endpoints"] == [kept]
    with httpx.Client(timeout=10, trust_env=False) as client:
        assert [w["url"] for w in client.get(f"{recs['router.gw'].attributes['endpoint']}/workers").json()["workers"]] == [kept]
    assert all(c.action == "noop" for c in ws1.plan().changes)


def test_drift_reports_a_killed_router_as_missing(project):
    import os
    import signal

    from click.testing import CliRunner

    from infraplan.cli.main import cli

    ws = Workspace(project)
    ws.apply(ws.plan())
    runner = CliRunner()
    clean = runner.invoke(cli, ["drift", str(project), "--no-health-generate"])
    assert clean.exit_code == 0, clean.output
    router = records(ws)["router.gw"]
    os.kill(router.attributes["pid"], signal.SIGKILL)
    res = runner.invoke(cli, ["drift", str(project), "--no-health-generate", "--json"])
    assert res.exit_code == 2, res.output
    import json

    findings = json.loads(res.output)["findings"]
    assert [(f["kind"], f["address"]) for f in findings] == [("missing", "router.gw")]


KEYED = """
variable:
  key: {type: string, sensitive: true}
model:
  m: {source: hf://org/tiny, revision: r1, served_name: tiny}
fleet:
  a:
    model: model.m
    replicas: 2
    engine: {type: sim, sim: {ttft_ms: 1, tpot_ms: 1}, args: {api_key: "${var.key}"}}
router:
  gw: {fleets: [fleet.a], policy: round_robin}
"""


def test_servers_with_an_api_key_are_registered_with_it_and_serve_through_the_router(
        tmp_path, leftover_routers, leftover_servers):
    """smg's worker detection calls /v1/models and /server_info, which a keyed SGLang server
    answers 401; smg gets the key on `POST /workers` (never on its command line) and uses it."""
    from infraplan.plan.planner import PlanOptions

    secret = "sk-router-e2e-4f1c"
    (tmp_path / "main.yaml").write_text(KEYED)
    ws = Workspace(tmp_path, var_args=[f"key={secret}"])
    try:
        result = ws.apply(ws.plan(PlanOptions()))
        assert result.ok, result.failed
        recs = records(ws)
        router = recs["router.gw"].attributes
        replicas = sorted(recs[f"fleet.a[{i}]"].attributes["endpoint"] for i in range(2))
        assert sorted(router["workers"]) == replicas
        with httpx.Client(trust_env=False, timeout=10) as c:
            assert c.get(f"{replicas[0]}/v1/models").status_code == 401  # the servers really are keyed
            assert all(chat(c, router["endpoint"]).status_code == 200 for _ in range(4))
        import psutil

        smg = psutil.Process(router["pid"])
        assert secret not in " ".join(smg.cmdline())
    finally:
        ws.apply(ws.plan(PlanOptions(destroy=True)))


def test_the_skypilot_routers_command_makes_real_smg_require_its_keys(tmp_path, monkeypatch):
    """The run text a SkyPilot router VM gets, run here by bash with smg's own flag parsing:
    inference needs the router key, /workers the admin key; the task text holds neither."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from helpers.net import free_port
    from infraplan.serving.smg import SmgClient
    from infraplan_providers.skypilot.router import open_port_warnings, run_command
    from infraplan_providers.skypilot.settings import SkyPilotSettings

    s = SkyPilotSettings()
    attrs = {"policy": "round_robin", "port": free_port()}
    assert len(open_port_warnings(attrs, s)) == 2  # both doors open without keys
    monkeypatch.setenv(s.router_api_key_env, "serve-key-e2e-51")
    monkeypatch.setenv(s.router_admin_key_env, "admin-key-e2e-77")
    assert open_port_warnings(attrs, s) == []
    cmd = run_command(attrs, s)
    assert "serve-key-e2e-51" not in cmd and "admin-key-e2e-77" not in cmd
    cmd = cmd.replace("--host 0.0.0.0", "--host 127.0.0.1") + f" --prometheus-port {free_port()}"
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=tmp_path, env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{attrs['port']}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{endpoint}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "smg did not start"
            time.sleep(0.2)
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        assert httpx.post(f"{endpoint}/v1/chat/completions", json=body, timeout=5).status_code == 401
        keyed = httpx.post(f"{endpoint}/v1/chat/completions", json=body, timeout=5,
                           headers={"Authorization": "Bearer serve-key-e2e-51"})
        assert keyed.status_code != 401  # past the key (no worker serves "tiny": 404/503)
        assert httpx.get(f"{endpoint}/workers", timeout=5).status_code == 401
        record = {"endpoint": endpoint, "admin_key_env": s.router_admin_key_env, "api_key_env": s.router_api_key_env}
        with SmgClient.for_router(record) as c:
            assert c.health()
            assert httpx.get(f"{endpoint}/workers", timeout=5,
                             headers={"Authorization": "Bearer admin-key-e2e-77"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)

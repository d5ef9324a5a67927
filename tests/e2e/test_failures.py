"""Failures mid-apply: independent branches go on, dependents are skipped, nothing is lost."""

from __future__ import annotations

import httpx
import pytest

from infraplan.state import StateStore

pytestmark = pytest.mark.e2e

CONFIG = """
provider:
  impatient:
    type: local
    settings: {{ready_timeout_s: 1.0}}
model:
  m:
    source: hf://org/tiny
    revision: {revision}
fleet:
  good:
    model: model.m
    replicas: 1
  bad:
    provider: impatient
    model: model.m
    replicas: 1
    engine: {{type: sim, sim: {{startup_s: {startup}}}}}
"""


def test_failed_replica_skips_dependents_not_independent_branches(project, leftover_servers):
    project.write("main.yaml", CONFIG.format(revision="aaa1111", startup=30))
    res = project.run("apply", "--auto-approve", check=False)
    assert res.returncode == 1
    out = res.stdout + res.stderr
    assert "fleet.bad[0]: failed" in out and "not healthy after 1s" in out
    assert "Resources: 3 added, 0 changed, 0 destroyed" in out
    assert "skipped" in out and "Traceback" not in out
    snap = StateStore.open_readonly(project.state).snapshot()
    status = {r.address: r.status for r in snap.resources}
    assert status["fleet.good[0]"] == "ready" and status["fleet.good"] == "ready"
    assert status["fleet.bad[0]"] == "failed"
    assert "fleet.bad" not in status  # its aggregate depends on the failed replica: skipped
    assert len(leftover_servers()) == 1  # the failed server was not left running
    hist = StateStore.open_readonly(project.state).history()[0]
    assert hist.status == "failed" and hist.summary["failed"] == 1

    # the next plan picks up from there: only the failed replica (and its fleet) remain to do
    project.write("main.yaml", CONFIG.format(revision="aaa1111", startup=0))
    plan = project.run("plan", "--json")
    import json

    actions = {c["address"]: c["action"] for c in json.loads(plan.stdout)["changes"]}
    assert actions["fleet.bad[0]"] == "create" and actions["fleet.bad"] == "create"  # the failed server is gone
    assert actions["fleet.good[0]"] == "noop"
    project.run("apply", "--auto-approve")
    assert project.run("plan", "--detailed-exitcode", check=False).returncode == 0


def test_failed_replacement_keeps_the_old_server_serving(project):
    project.write("main.yaml", CONFIG.format(revision="aaa1111", startup=0))
    project.run("apply", "--auto-approve")
    old = StateStore.open_readonly(project.state).get("fleet.bad[0]").attributes

    # the new revision never becomes healthy: the create-before-destroy replacement fails
    project.write("main.yaml", CONFIG.format(revision="bbb2222", startup=30))
    res = project.run("apply", "--auto-approve", check=False)
    assert res.returncode == 1
    rec = StateStore.open_readonly(project.state).get("fleet.bad[0]")
    assert rec is not None and rec.attributes["instance_id"] == old["instance_id"]
    assert not [r for r in StateStore.open_readonly(project.state).snapshot().resources if r.deposed]
    info = httpx.get(old["endpoint"] + "/server_info").json()  # SGLang reports the revision there
    assert info["revision"] == "aaa1111"  # still serving the old revision

"""Crash safety and locking with real processes: kill -9 mid-apply, and two applies at once."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from helpers.timing import wait_for

from infraplan.state import StateStore
from helpers.timing import within

pytestmark = pytest.mark.e2e

SLOW_FLEET = """
model:
  m:
    source: hf://org/tiny
    revision: abc1234
fleet:
  f:
    model: model.m
    replicas: {replicas}
    engine:
      type: sim
      sim: {{startup_s: {startup}}}
"""




def _statuses(state_path):
    if not state_path.exists():
        return {}
    snap = StateStore.open_readonly(state_path).snapshot()
    return {r.address: r.status for r in snap.resources if r.kind == "replica" and not r.deposed}


def _servers_of(state_path):
    """Live sim processes whose instance id this state knows, and all live sim processes of this run."""
    ids = {r.attributes.get("instance_id") for r in StateStore.open_readonly(state_path).snapshot().resources}
    run = os.environ["INFRAPLAN_TEST_RUN"]
    known, all_ = [], []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = proc.info["cmdline"] or []
            if "infraplan.serving.sim" not in cmd or (proc.info["environ"] or {}).get("INFRAPLAN_TEST_RUN") != run:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        all_.append(proc)
        iid = cmd[cmd.index("--instance-id") + 1] if "--instance-id" in cmd else None
        if iid in ids:
            known.append(proc)
    return known, all_


def test_kill_9_mid_apply_loses_nothing(project):
    project.write("main.yaml", SLOW_FLEET.format(replicas=4, startup=1.0))
    cli = project.popen("apply", "--auto-approve", "--parallelism", "2")
    try:
        # wait until some replica is done and another is mid-create, then kill the CLI hard
        wait_for(lambda: "ready" in _statuses(project.state).values()
                  and "creating" in _statuses(project.state).values())
    finally:
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
    statuses = _statuses(project.state)
    assert "creating" in statuses.values() and len(statuses) < 5

    # every server that was started is known to the state (by instance id): no orphans
    known, all_ = _servers_of(project.state)
    assert {p.pid for p in all_} == {p.pid for p in known}

    # the next plan picks up from there: it adopts what runs and creates the rest
    plan = project.run("plan", "--detailed-exitcode", check=False)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "adopts the server an interrupted apply started" in plan.stdout
    # the killed run's lock is stale (its pid is gone from this host): plan says so, and the
    # next apply breaks it, audited, with a one-line notice
    assert "is stale" in plan.stderr
    lock = StateStore.open_readonly(project.state).current_lock()
    applied = project.run("apply", "--auto-approve")
    assert [ln for ln in applied.stderr.splitlines() if ln.startswith("Note: broke the stale state lock")]
    audit = StateStore.open_readonly(project.state).audit_log()
    assert [(a.event, a.details["id"]) for a in audit if a.event == "lock-broken"] == [("lock-broken", lock.id)]
    assert StateStore.open_readonly(project.state).history()[-1].status == "interrupted"
    statuses = _statuses(project.state)
    assert statuses == {f"fleet.f[{i}]": "ready" for i in range(4)}
    known, all_ = _servers_of(project.state)
    assert len(known) == 4 and len(all_) == 4
    assert project.run("plan", "--detailed-exitcode", check=False).returncode == 0

    project.run("destroy", "--auto-approve")
    assert _servers_of(project.state)[1] == []


def test_second_apply_fails_at_once_naming_the_holder(project):
    project.write("main.yaml", SLOW_FLEET.format(replicas=1, startup=2.0))
    first = project.popen("apply", "--auto-approve")
    try:
        wait_for(lambda: project.state.exists() and StateStore.open_readonly(project.state).current_lock())
        t0 = time.monotonic()
        second = project.run("apply", "--auto-approve", check=False)
        assert time.monotonic() - t0 < within(10)
        assert second.returncode == 1
        assert "locked" in second.stderr and "apply" in second.stderr
        assert "Traceback" not in second.stderr
        lock = StateStore.open_readonly(project.state).current_lock()
        assert str(lock.pid) in second.stderr
        # read-only commands need no lock
        assert project.run("state", "list").returncode == 0
    finally:
        assert first.wait(timeout=60) == 0, first.stdout.read()
    assert _statuses(project.state) == {"fleet.f[0]": "ready"}

"""Recovery with real processes: SIGTERM and Ctrl-C during apply, kill -9 with creates in
flight (null provider: nothing real is created, so a create that never returned made
nothing), and what refresh finds after a local server was killed or turned unhealthy."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time

import pytest
from helpers.timing import wait_for

from helpers.cli import run
from helpers.timing import within
from infraplan.state import StateStore

pytestmark = pytest.mark.e2e

NULL_FLEET = """
provider:
  slow:
    type: "null"
    settings: {{latency_ms: {latency}}}
model:
  m:
    source: hf://org/tiny
    revision: abc1234
fleet:
  f:
    provider: slow
    model: model.m
    replicas: 4
"""




def _records(state_path) -> dict:
    if not state_path.exists():
        return {}
    return {r.address: r for r in StateStore.open_readonly(state_path).snapshot().resources
            if r.kind == "replica" and not r.deposed}


def _creating(state_path, n: int = 2) -> bool:
    return sum(r.status == "creating" for r in _records(state_path).values()) >= n


class Lines:
    """The lines a process prints, as they come, with when each came."""

    def __init__(self, proc):
        self.q: queue.Queue = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def until(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, "\n".join(self.all)
            self.all.append(line)
            if text in line:
                return line

    def rest(self) -> str:
        while (line := self.q.get(timeout=30)) is not None:
            self.all.append(line)
        return "\n".join(self.all)


def _converges(project):
    """The next plan creates what is missing, and the apply after it leaves every replica
    with the id and endpoint only a create gives, and nothing more to do."""
    project.write("main.yaml", NULL_FLEET.format(latency=0))
    plan = project.run("plan", "--detailed-exitcode", check=False)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "adopts" not in plan.stdout
    applied = project.run("apply", "--auto-approve")
    recs = _records(project.state)
    assert sorted(recs) == [f"fleet.f[{i}]" for i in range(4)]
    assert all(r.status == "ready" and r.attributes.get("id") and r.attributes.get("endpoint") for r in recs.values())
    fleet = StateStore.open_readonly(project.state).get("fleet.f")
    assert fleet.attributes["endpoints"] == [f"null://fleet.f[{i}]" for i in range(4)]
    assert project.run("plan", "--detailed-exitcode", check=False).returncode == 0
    return applied


def test_sigterm_stops_apply_as_ctrl_c_does(project):
    project.write("main.yaml", NULL_FLEET.format(latency=1500))
    cli = project.popen("apply", "--auto-approve", "--parallelism", "2")
    out = Lines(cli)
    wait_for(lambda: _creating(project.state))
    cli.send_signal(signal.SIGTERM)
    line = out.until("Stopping (SIGTERM)", within(2))
    assert "waiting for 2 running step(s)" in line
    assert cli.wait(timeout=within(5)) == 1
    text = out.rest()
    assert "Error: apply stopped by SIGTERM" in text
    assert "interrupted (not started)" in text and "skipped (a dependency failed)" not in text

    s = StateStore.open_readonly(project.state)
    assert s.current_lock() is None
    statuses = {a: r.status for a, r in _records(project.state).items()}
    assert list(statuses.values()).count("ready") == 2 and "creating" not in statuses.values()
    assert s.history()[0].status == "interrupted"
    _converges(project)


def test_ctrl_c_says_at_once_what_it_waits_for_and_a_second_one_stops_waiting(project):
    project.write("main.yaml", NULL_FLEET.format(latency=8000))
    cli = project.popen("apply", "--auto-approve", "--parallelism", "2")
    out = Lines(cli)
    wait_for(lambda: _creating(project.state))
    time.sleep(0.5)  # both intents are recorded before either call starts: let the 8 s calls begin
    cli.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    line = out.until("Stopping (Ctrl-C)", within(2))
    assert time.monotonic() - t0 < within(2)  # at once, not when the 8 s calls end
    assert "no new step starts" in line and "fleet.f[0] (create)" in line and "fleet.f[1] (create)" in line
    cli.send_signal(signal.SIGINT)
    out.until("Stopped waiting for", within(2))
    assert cli.wait(timeout=within(3)) == 1  # does not sit out the running calls
    text = out.rest()
    assert "Error: apply interrupted: stopped waiting for 2 running step(s)" in text
    assert "Traceback" not in text and "skipped (a dependency failed)" not in text

    assert StateStore.open_readonly(project.state).current_lock() is None
    assert StateStore.open_readonly(project.state).history()[0].status == "interrupted"
    _converges(project)  # the two left creating (no id) are created again, not adopted


def test_kill_9_with_null_creates_in_flight_adopts_nothing_it_cannot_prove(project):
    project.write("main.yaml", NULL_FLEET.format(latency=1500))
    cli = project.popen("apply", "--auto-approve", "--parallelism", "2")
    try:
        wait_for(lambda: _creating(project.state))
    finally:
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
    assert _creating(project.state)
    project.write("main.yaml", NULL_FLEET.format(latency=0))
    plan = project.run("plan")
    assert "an interrupted create left no server behind" in plan.stdout
    assert "an apply is in progress" not in plan.stderr and "is stale" in plan.stderr
    applied = _converges(project)
    assert "broke the stale state lock" in applied.stderr  # the killed run's lock, broken with one notice
    assert [a.event for a in StateStore.open_readonly(project.state).audit_log()].count("lock-broken") == 1


def test_refresh_only_after_kill_9_shows_the_record_going(make_fleet):
    fleet = make_fleet(2)
    pid = fleet.replicas()["fleet.web[1]"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: fleet.provider().read("replica", "fleet.web[1]", fleet.replicas()["fleet.web[1]"]).exists is False)
    shown = run("plan", str(fleet.path), "--refresh-only", "--detailed-exitcode")
    assert shown.exit_code == 2, shown.output
    assert "fleet.web[1] is gone: it will be removed from state" in shown.output
    assert "No changes" not in shown.output
    done = run("apply", str(fleet.path), "--refresh-only", "--auto-approve")
    assert done.exit_code == 0, done.output
    assert sorted(fleet.replicas()) == ["fleet.web[0]"]
    assert run("plan", str(fleet.path), "--detailed-exitcode").exit_code == 2  # a plain plan creates it again


def test_an_unhealthy_local_replica_is_replaced(make_fleet):
    fleet = make_fleet(2)
    fake = fleet.start_fake("unhealthy", "fleet.web[1]")
    shown = run("plan", str(fleet.path), "--detailed-exitcode")
    assert shown.exit_code == 2, shown.output
    assert "fleet.web[1] must be replaced" in shown.output
    assert "replaced because it is tainted: running but not healthy" in shown.output
    assert "(create before destroy)" in shown.output
    done = run("apply", str(fleet.path), "--auto-approve")
    assert done.exit_code == 0, done.output
    assert fleet.replicas()["fleet.web[1]"]["instance_id"] != fake["instance_id"]
    assert run("plan", str(fleet.path), "--detailed-exitcode").exit_code == 0

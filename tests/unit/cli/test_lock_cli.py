"""The state lock as commands meet it: a stale lock is broken with one notice, a live one is
named before anything is planned, `plan` says an apply is running, and a run killed while it
wrote its history leaves a history row the next run closes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from helpers.cli import fingerprint, run
from helpers.paths import REPO
from infraplan.state import StateStore
from infraplan.util.identity import hostname


def dead_pid() -> tuple[int, float]:
    """The pid and start time of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()
    proc.wait(30)
    assert not psutil.pid_exists(proc.pid)
    return proc.pid, started


def plant_lock(db: Path, *, pid: int, started: float | None, host: str | None = None, who: str = "alice@ci-3") -> str:
    with StateStore(db) as s:
        s.db.table("locks").insert({"slot": 1, "id": "f" * 32, "who": who, "pid": pid, "host": host or hostname(),
                                    "operation": "apply", "since": "2026-01-02T03:04:05Z", "pid_started": started})
    return "f" * 32


def relabel(project: Path) -> None:
    """A change that needs no server (the fleet has 0 replicas)."""
    main = project / "main.yaml"
    main.write_text(main.read_text().replace("ml-platform", "ml-infra"))


def notes(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("Note: ")]


@pytest.mark.parametrize("change", [True, False], ids=["apply", "no-op apply"])
def test_apply_breaks_a_stale_lock_of_this_host_with_one_notice(project, change):
    db = project / "infraplan.db"
    pid, started = dead_pid()
    plant_lock(db, pid=pid, started=started)
    if change:
        relabel(project)
    result = run("apply", "config", "--auto-approve", "--refresh=false")
    assert result.exit_code == 0, result.output
    [note] = notes(result.stderr)
    assert "broke the stale state lock of alice@ci-3" in note and f"pid {pid} on {hostname()}" in note
    s = StateStore.open_readonly(db)
    assert s.current_lock() is None
    broke = [a for a in s.audit_log() if a.event == "lock-broken"]
    assert len(broke) == 1 and broke[0].details["pid"] == pid


def test_a_pid_reused_by_another_program_is_a_stale_lock(project):
    me = psutil.Process()
    plant_lock(project / "infraplan.db", pid=me.pid, started=me.create_time() - 600)
    result = run("apply", "config", "--auto-approve", "--refresh=false")
    assert result.exit_code == 0, result.output
    assert len(notes(result.stderr)) == 1


def test_apply_against_a_live_lock_fails_before_planning_naming_the_holder(project):
    db = project / "infraplan.db"
    relabel(project)
    holder = StateStore(db)
    try:
        with holder.lock("apply", who="alice@build-7") as info:
            before = fingerprint(db)
            result = run("apply", "config", "--auto-approve", "--refresh=false")
            assert result.exit_code == 1
            assert result.stdout == ""  # no plan printed before the refusal
            [line] = result.stderr.strip().splitlines()
            assert line.startswith("Error: state is locked by alice@build-7")
            for part in (f"pid {info.pid}", f"on {info.host}", "for apply", f"since {info.since}", info.id):
                assert part in line
            assert fingerprint(db) == before
    finally:
        holder.close()


def test_plan_during_an_apply_says_so_in_one_line(project):
    db = project / "infraplan.db"
    relabel(project)
    holder = StateStore(db)
    try:
        with holder.lock("apply", who="alice@build-7") as info:
            result = run("plan", "config", "--refresh=false")
            assert result.exit_code == 0, result.output
            [note] = notes(result.stderr)
            assert note.startswith("Note: an apply is in progress: the state is locked by alice@build-7")
            assert f"pid {info.pid}" in note and f"since {info.since}" in note
            assert "will be updated in place" in result.stdout
    finally:
        holder.close()
    plain = run("plan", "config", "--refresh=false")
    assert notes(plain.stderr) == []


def test_force_unlock_of_a_dead_holder_needs_no_force(project):
    pid, started = dead_pid()
    lock_id = plant_lock(project / "infraplan.db", pid=pid, started=started)
    result = run("force-unlock", lock_id, "--state", str(project / "infraplan.db"))
    assert result.exit_code == 0, result.output
    assert StateStore.open_readonly(project / "infraplan.db").current_lock() is None


def test_force_unlock_of_another_hosts_lock_needs_force(project):
    db = project / "infraplan.db"
    lock_id = plant_lock(db, pid=1, started=None, host="build-9")
    refused = run("force-unlock", lock_id, "--state", str(db))
    assert refused.exit_code == 1
    assert "another host" in refused.stderr and "--force" in refused.stderr
    assert StateStore.open_readonly(db).current_lock().id == lock_id
    assert run("force-unlock", lock_id, "--force", "--state", str(db)).exit_code == 0


KILLED_WHILE_RECORDING = """
    import os, sys
    from infraplan.state import StateStore
    StateStore.set_outputs = lambda *a, **k: os._exit(9)  # killed after the work, before history
    from infraplan.cli.main import main
    sys.argv = ["infraplan", "apply", {config!r}, "--auto-approve", "--refresh=false"]
    main()
"""


def test_a_run_killed_while_recording_its_end_leaves_a_history_row_the_next_run_closes(project):
    db = project / "infraplan.db"
    relabel(project)
    runs_before = len(StateStore.open_readonly(db).history())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    code = textwrap.dedent(KILLED_WHILE_RECORDING).format(config=str(project))
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert killed.returncode == 9, killed.stderr
    s = StateStore.open_readonly(db)
    assert s.current_lock() is not None
    history = s.history()
    assert len(history) == runs_before + 1 and history[0].status == "running"

    result = run("apply", "config", "--auto-approve", "--refresh=false")  # nothing left to do
    assert result.exit_code == 0, result.output
    assert len(notes(result.stderr)) == 1
    shown = json.loads(run("history", "--state", str(db), "--json").stdout)
    assert shown[0]["status"] == "interrupted" and shown[0]["finished_at"]
    assert StateStore.open_readonly(db).current_lock() is None

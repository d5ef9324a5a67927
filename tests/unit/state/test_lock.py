"""Tests of the state lock, across real processes; those taking `state_location` run on both backends
(on PostgreSQL the row comes with a session advisory lock: tests/unit/state/test_postgres.py has the rest)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from infraplan.errors import LockError, StateError
from infraplan.state import LockInfo, StateStore, default_who, open_store
from infraplan.state.lock import HolderState, broken_notice
from infraplan.util.identity import hostname
from helpers.paths import REPO
from helpers.timing import within


HOLDER = """
    import json, os, signal, sys
    from infraplan.state import open_store
    s = open_store({path!r})
    with s.lock("apply", who="alice") as info:
        print(json.dumps(info.as_dict()), flush=True)
        if {die!r}:
            os.kill(os.getpid(), signal.SIGKILL)
        sys.stdin.read()  # hold until the parent closes stdin
    print("released", flush=True)
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def start(path: Path | str, *, die: bool = False) -> tuple[subprocess.Popen, dict]:
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        code = textwrap.dedent(HOLDER).format(path=str(path), die=die)
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        procs.append(proc)
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        return proc, json.loads(line)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_second_process_fails_at_once_naming_the_holder(state_location: str, spawn):
    proc, held = spawn(state_location)
    with open_store(state_location) as s:
        start = time.monotonic()
        with pytest.raises(LockError) as exc:
            with s.lock("plan"):
                pytest.fail("acquired a held lock")
        assert time.monotonic() - start < within(1.0)
        msg = str(exc.value)
        assert f"locked by alice (pid {proc.pid} on {held['host']}) for apply" in msg
        assert f"since {held['since']}" in msg
        assert f"infraplan force-unlock {held['id']}" in msg
        assert "no longer running" not in msg
        assert exc.value.holder["pid"] == proc.pid
        assert exc.value.holder["id"] == held["id"]
        assert isinstance(exc.value, StateError)
        assert s.current_lock().id == held["id"]

        proc.stdin.close()  # let the holder release and exit
        assert proc.stdout.readline().strip() == "released"
        assert proc.wait(10) == 0
        assert s.current_lock() is None
        with s.lock("plan") as mine:
            assert mine.pid == os.getpid()
            assert s.current_lock() == mine
        assert s.current_lock() is None


def test_dead_holder_is_broken_automatically_audited_and_announced(state_location: str, spawn):
    proc, held = spawn(state_location, die=True)
    assert proc.wait(10) == -signal.SIGKILL
    assert held["pid_started"] is not None  # recorded, to tell a reused pid apart
    with open_store(state_location) as s:
        run = s.add_history(operation="apply", plan_hash=None, summary={}, started_at="t0", finished_at=None,
                            status="running", config_digest=None)
        serial = s.serial
        told: list[LockInfo] = []
        with s.lock("apply", who="bob@h", on_broken=told.append) as mine:
            assert s.current_lock() == mine
        assert [t.id for t in told] == [held["id"]]
        assert s.serial == serial
        event = s.audit_log(limit=1)[0]
        assert (event.event, event.who) == ("lock-broken", "bob@h")
        assert event.details == held
        assert s.get_history(run).status == "interrupted"  # the killed run's row is closed
        line = broken_notice(told[0])
        assert "\n" not in line and f"pid {proc.pid}" in line and "alice" in line


def test_a_reused_pid_is_told_apart_by_its_start_time(path: Path):
    me = psutil.Process()
    with StateStore(path) as s:
        # a lock row naming this very pid, but a process started an hour earlier: the pid was reused
        s.db.table("locks").insert({"slot": 1, "id": "old", "who": "alice", "pid": me.pid, "host": hostname(),
                                    "operation": "apply", "since": "then", "pid_started": me.create_time() - 3600})
        assert s.current_lock().holder_state() is HolderState.GONE
        with s.lock("apply"):
            pass
        assert s.audit_log(limit=1)[0].event == "lock-broken"


def test_a_live_or_remote_holder_is_never_broken(path: Path):
    me = psutil.Process()
    with StateStore(path) as s:
        s.db.table("locks").insert({"slot": 1, "id": "live", "who": "alice", "pid": me.pid, "host": hostname(),
                                    "operation": "apply", "since": "then", "pid_started": me.create_time()})
        assert s.current_lock().holder_state() is HolderState.ALIVE
        with pytest.raises(LockError, match="locked by alice"):
            with s.lock("apply"):
                pass
        assert s.break_stale_lock() is None
        s.force_unlock("live")
        s.db.table("locks").insert({"slot": 1, "id": "far", "who": "carol", "pid": 1, "host": "elsewhere",
                                    "operation": "apply", "since": "then", "pid_started": None})
        assert s.current_lock().holder_state() is HolderState.REMOTE
        with pytest.raises(LockError, match="locked by carol"):
            with s.lock("apply"):
                pass
        assert s.current_lock().id == "far"


def test_force_unlock_requires_the_matching_id(state_location: str):
    with open_store(state_location) as s:
        with pytest.raises(LockError, match="not locked"):
            s.force_unlock("abc")
        with s.lock("apply") as info:
            with pytest.raises(LockError, match="does not match") as exc:
                s.force_unlock("abc")
            assert exc.value.holder["id"] == info.id
            assert s.current_lock() == info
        assert s.audit_log() == []


def test_release_leaves_a_lock_that_is_no_longer_ours(path: Path):
    """SQLite: a force-unlocked lock can be taken by another store while its first holder still runs
    (PostgreSQL ends the first holder's session instead: test_postgres.py)."""
    with StateStore(path) as a, StateStore(path) as b:
        theirs = None
        with a.lock("apply") as mine:
            b.force_unlock(mine.id)
            theirs_cm = b.lock("refresh")
            theirs = theirs_cm.__enter__()
        try:
            assert a.current_lock() == theirs  # a's exit did not drop b's lock
        finally:
            theirs_cm.__exit__(None, None, None)
        assert a.current_lock() is None


def test_in_process_second_acquirer_and_single_row(state_location: str):
    with open_store(state_location) as a, open_store(state_location) as b:
        with a.lock("apply"):
            with pytest.raises(LockError, match=f"pid {os.getpid()}"):
                with b.lock("apply"):
                    pass
            with pytest.raises(LockError, match=f"pid {os.getpid()}"):  # nor the holder itself, twice
                with a.lock("apply"):
                    pass
        with pytest.raises(StateError, match="single_row|single row"):
            with a._transaction() as conn:
                conn.execute("INSERT INTO locks (slot, id, operation, since) VALUES (2, 'x', 'y', 'z')")
        assert a.current_lock() is None
        with b.lock("apply"):  # both released
            pass


def test_lock_defaults_and_no_serial_bump(state_location: str):
    with open_store(state_location) as s:
        with s.lock("apply") as info:
            assert info.who == default_who()
            assert info.host in info.who
            assert len(info.id) == 32
            assert info.since.endswith("Z")
        assert s.serial == 0
        assert "@" in default_who()


def test_a_run_that_released_its_lock_without_closing_its_history_row_is_closed(state_location: str):
    """A second SIGTERM while an apply writes its end: the lock goes, the row stays "running"."""
    with open_store(state_location) as s:
        left = s.add_history(operation="apply", plan_hash=None, summary={}, started_at="t0", finished_at=None,
                             status="running", config_digest=None)
        with s.lock("apply"):
            mine = s.add_history(operation="apply", plan_hash=None, summary={}, started_at="t1", finished_at=None,
                                 status="running", config_digest=None)
            assert s.get_history(left).status == "interrupted" and s.get_history(left).finished_at
            assert s.get_history(mine).status == "running"  # the holder's own row is left alone

"""Tests of the state store: semantics, durability, schema handling; those taking `store` or
`state_location` run on both backends (an SQLite file, a throwaway PostgreSQL database)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from infraplan.errors import StateDamaged, StateError
from infraplan.state import StateStore, Store, default_who, migrations, open_store
from helpers.paths import REPO
from helpers.timing import within



@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(state_location: str):
    s = open_store(state_location)
    yield s
    s.close()


def raw_connection(location: str):
    """A DB-API connection of the backend's own driver, bypassing the store."""
    if location.startswith("postgresql://"):
        import psycopg

        return psycopg.connect(location)
    return sqlite3.connect(location)


def driver_error(location: str) -> type[Exception]:
    if location.startswith("postgresql://"):
        import psycopg

        return psycopg.Error
    return sqlite3.DatabaseError


def applied_migrations(store: Store) -> list[str]:
    if isinstance(store, StateStore):
        return migrations.applied_names(store.db)
    with store._read() as conn:
        return [r[0] for r in conn.execute(f"SELECT name FROM {migrations.PG_MIGRATIONS_TABLE}").fetchall()]


def run_child(code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def create(store: Store, address: str, attrs: dict | None = None, deps=()) -> None:
    attrs = attrs if attrs is not None else {"port": 1}
    store.record_intent(address, action="create", kind="replica", provider="local",
                        attributes=attrs, dependencies=deps)
    store.record_result(address, attributes=attrs)


# -- opening, meta, schema ---------------------------------------------------


def test_new_state_has_lineage_and_serial_zero(store: Store):
    assert re.fullmatch(r"[0-9a-f]{32}", store.lineage)
    assert store.serial == 0


def test_new_state_file_is_in_wal_mode(path: Path):
    with StateStore(path) as store:
        assert store.db.journal_mode == "wal"
        assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert path.exists()


def test_reopen_keeps_lineage_and_migrations_are_idempotent(state_location: str):
    with open_store(state_location) as s:
        lineage = s.lineage
        create(s, "model.m")
        serial = s.serial
    for _ in range(2):
        with open_store(state_location) as s:
            assert s.lineage == lineage
            assert s.serial == serial
            assert s.get("model.m").status == "ready"
            assert applied_migrations(s) == migrations.known_names()


def test_two_states_have_different_lineages(tmp_path: Path):
    with StateStore(tmp_path / "a.db") as a, StateStore(tmp_path / "b.db") as b:
        assert a.lineage != b.lineage


def test_corrupt_file_is_a_state_error(path: Path):
    path.write_bytes(b"this is not an sqlite database at all" * 50)
    with pytest.raises(StateDamaged, match="state is damaged at .*cannot be read as an SQLite database"):
        StateStore(path)
    with pytest.raises(StateDamaged, match="state is damaged at .*cannot be read as an SQLite database"):
        StateStore.open_readonly(path)


def test_newer_schema_is_refused(path: Path):
    with StateStore(path) as s:
        s.db.table("_sqlite_migrations").insert(
            {"migration_set": "infraplan", "name": "m999_from_the_future", "applied_at": "x"}
        )
    with pytest.raises(StateError, match="newer infraplan.*m999_from_the_future"):
        StateStore(path)
    with pytest.raises(StateError, match="newer infraplan"):
        StateStore.open_readonly(path)


def test_path_is_a_directory(tmp_path: Path):
    with pytest.raises(StateError, match="is a directory"):
        StateStore(tmp_path)


# -- serial --------------------------------------------------------------------


def test_every_changing_write_bumps_serial_once(store: Store):
    steps = [
        lambda: store.record_intent("fleet.f[0]", action="create", kind="replica",
                                    provider="local", attributes={"port": 1}),
        lambda: store.record_result("fleet.f[0]", attributes={"port": 1, "pid": 9}),
        lambda: store.record_intent("fleet.f[0]", action="update", kind="replica",
                                    provider="local", attributes={"port": 2}),
        lambda: store.record_failure("fleet.f[0]", "boom"),
        lambda: store.taint("fleet.f[0]"),
        lambda: store.untaint("fleet.f[0]"),
        lambda: store.depose("fleet.f[0]"),
        lambda: store.set_outputs({"url": "http://127.0.0.1:1"}),
        lambda: store.move("fleet.f", "fleet.g"),
    ]
    for i, step in enumerate(steps, start=1):
        step()
        assert store.serial == i


def test_non_resource_writes_and_noops_do_not_bump(store: Store):
    store.set_outputs({"a": 1}, {"a"})
    serial = store.serial
    store.set_outputs({"a": 1}, {"a"})  # identical
    store.audit("note")
    store.add_history(operation="apply", plan_hash=None, summary={}, who="t",
                      started_at=None, finished_at=None, status="ok", config_digest=None)
    with store.lock("apply"):
        pass
    assert store.remove("nope", missing_ok=True) is False
    assert store.serial == serial
    store.set_outputs({"a": 1}, set())  # sensitivity changed
    assert store.serial == serial + 1


def test_failed_write_changes_nothing(store: Store):
    create(store, "model.m")
    before = store.snapshot()
    with pytest.raises(StateError, match="not in state"):
        store.record_result("model.x", attributes={})
    with pytest.raises(StateError, match="not in state"):
        store.record_result("model.x", attributes={}, dependencies=["model.m"])
    with pytest.raises(StateError):
        store.move("model.x", "model.y")
    assert store.snapshot() == before


def test_batch_is_one_transaction_and_one_bump(store: Store, state_location: str):
    with store.batch():
        for i in range(3):
            create(store, f"fleet.f[{i}]")
        # Visible inside the batch, invisible to another connection until commit.
        assert len(store.resources()) == 3
        with open_store(state_location, readonly=True) as other:
            assert other.resources() == []
            assert other.serial == 0
    assert store.serial == 1
    with open_store(state_location, readonly=True) as other:
        assert len(other.resources()) == 3


def test_batch_rolls_back_on_error(store: Store):
    create(store, "model.m")
    with pytest.raises(RuntimeError):
        with store.batch():
            create(store, "fleet.f[0]")
            raise RuntimeError("stop")
    assert store.get("fleet.f[0]") is None
    assert store.serial == 2


def test_error_caught_inside_batch_only_undoes_that_call(store: Store):
    with store.batch():
        create(store, "model.m")
        with pytest.raises(StateError):
            store.untaint("model.m")  # not tainted
    assert store.get("model.m").status == "ready"


# -- resources -----------------------------------------------------------------


def test_create_intent_then_result(store: Store):
    store.record_intent("fleet.f[0]", action="create", kind="replica", provider="local",
                        attributes={"port": 8001, "token": "t"}, dependencies=["model.m"])
    r = store.get("fleet.f[0]")
    assert r.status == "creating"
    assert r.kind == "replica" and r.provider == "local"
    assert r.attributes == {"port": 8001, "token": "t"}  # identity kept before the call
    assert r.pending["action"] == "create"
    assert r.pending["attributes"] == {"port": 8001, "token": "t"}
    assert r.pending["since"].endswith("Z")
    assert r.dependencies == ["model.m"]

    store.record_result("fleet.f[0]", attributes={"port": 8001, "token": "t", "pid": 42})
    r = store.get("fleet.f[0]")
    assert r.status == "ready"
    assert r.attributes["pid"] == 42
    assert r.pending is None and r.error is None
    assert r.dependencies == ["model.m"]


def test_update_intent_keeps_old_attributes_until_result(store: Store):
    create(store, "fleet.f[0]", {"port": 1, "args": ["a"]}, deps=["model.m"])
    store.record_intent("fleet.f[0]", action="update", kind="replica", provider="local",
                        attributes={"port": 1, "args": ["b"]}, dependencies=["model.n"])
    r = store.get("fleet.f[0]")
    assert r.status == "updating"
    assert r.attributes == {"port": 1, "args": ["a"]}
    assert r.pending["attributes"] == {"port": 1, "args": ["b"]}
    assert r.dependencies == ["model.m"]
    store.record_result("fleet.f[0]", attributes={"port": 1, "args": ["b"]})
    r = store.get("fleet.f[0]")
    assert r.attributes == {"port": 1, "args": ["b"]}
    assert r.dependencies == ["model.n"]  # taken from the intent


def test_record_result_explicit_dependencies_and_status(store: Store):
    create(store, "fleet.f[0]", deps=["a"])
    created_at = store.get("fleet.f[0]").created_at
    store.record_intent("fleet.f[0]", action="update", kind="replica", provider="local", attributes={"x": 0})
    store.record_failure("fleet.f[0]", "boom")
    store.record_result("fleet.f[0]", attributes={"x": 1}, dependencies=["b", "c"],
                        status="tainted")
    r = store.get("fleet.f[0]")
    assert (r.dependencies, r.status) == (["b", "c"], "tainted")
    # pending and error are cleared; what the result does not carry stays as stored
    assert (r.attributes, r.pending, r.error) == ({"x": 1}, None, None)
    assert (r.kind, r.provider, r.created_at) == ("replica", "local", created_at)
    with pytest.raises(ValueError):
        store.record_result("fleet.f[0]", attributes={}, status="weird")


def test_delete_intent_then_remove(store: Store):
    create(store, "model.m", {"name": "m"})
    store.record_intent("model.m", action="delete", kind="model", provider=None,
                        attributes={})
    r = store.get("model.m")
    assert r.status == "deleting"
    assert r.attributes == {"name": "m"}
    assert r.pending["action"] == "delete"
    assert store.remove("model.m") is True
    assert store.get("model.m") is None
    with pytest.raises(StateError, match="not in state"):
        store.remove("model.m")


def test_intent_validation(store: Store):
    with pytest.raises(StateError, match="not in state"):
        store.record_intent("model.m", action="update", kind="model", provider=None,
                            attributes={})
    with pytest.raises(ValueError, match="unknown action"):
        store.record_intent("model.m", action="explode", kind="model", provider=None,
                            attributes={})
    assert store.serial == 0


def test_failure_keeps_attributes_and_pending(store: Store):
    create(store, "fleet.f[0]", {"port": 1})
    store.record_intent("fleet.f[0]", action="update", kind="replica", provider="local",
                        attributes={"port": 2})
    store.record_failure("fleet.f[0]", "provider said no")
    r = store.get("fleet.f[0]")
    assert r.status == "failed"
    assert r.error == "provider said no"
    assert r.attributes == {"port": 1}
    assert r.pending["attributes"] == {"port": 2}
    store.record_result("fleet.f[0]", attributes={"port": 2})
    r = store.get("fleet.f[0]")
    assert (r.status, r.error, r.pending) == ("ready", None, None)


def test_depose_keeps_old_object_beside_new(store: Store):
    create(store, "fleet.f[0]", {"port": 1})
    key = store.depose("fleet.f[0]")
    assert re.fullmatch(r"[0-9a-f]{8}", key)
    assert store.get("fleet.f[0]") is None
    old = store.get("fleet.f[0]", deposed=key)
    assert old.attributes == {"port": 1} and old.is_deposed
    create(store, "fleet.f[0]", {"port": 2})
    assert [(r.address, r.deposed) for r in store.resources()] == [
        ("fleet.f[0]", ""), ("fleet.f[0]", key)]
    assert [r.deposed for r in store.resources(include_deposed=False)] == [""]
    store.record_intent("fleet.f[0]", action="delete", kind="replica", provider="local",
                        attributes={}, deposed=key)
    assert store.get("fleet.f[0]", deposed=key).status == "deleting"
    assert store.get("fleet.f[0]").status == "ready"
    store.remove("fleet.f[0]", deposed=key)
    assert len(store.resources()) == 1
    with pytest.raises(StateError):
        store.depose("fleet.nope")


def test_move_renames_address_children_and_dependencies(store: Store):
    create(store, "fleet.a")
    create(store, "fleet.a[0]", deps=["fleet.a"])
    create(store, "fleet.a[1]", deps=["fleet.a"])
    create(store, "fleet.ab", deps=["fleet.a[1]"])  # prefix but not a child
    create(store, "fleet.z", deps=["fleet.ab", "fleet.a"])
    moved = store.move("fleet.a", "fleet.b")
    assert moved == ["fleet.b", "fleet.b[0]", "fleet.b[1]"]
    assert [r.address for r in store.resources()] == [
        "fleet.ab", "fleet.b", "fleet.b[0]", "fleet.b[1]", "fleet.z"]
    assert store.get("fleet.b[1]").dependencies == ["fleet.b"]
    assert store.get("fleet.ab").dependencies == ["fleet.b[1]"]
    assert store.get("fleet.z").dependencies == ["fleet.ab", "fleet.b"]


def test_move_errors(store: Store):
    create(store, "fleet.a")
    create(store, "fleet.b[0]")
    with pytest.raises(StateError, match="not in state"):
        store.move("fleet.x", "fleet.y")
    with pytest.raises(StateError, match=r"fleet\.b\[0\] already exists"):
        store.move("fleet.a", "fleet.b")
    assert store.get("fleet.a") is not None


def test_taint_untaint(store: Store):
    create(store, "fleet.f[0]")
    store.taint("fleet.f[0]")
    assert store.get("fleet.f[0]").status == "tainted"
    store.untaint("fleet.f[0]")
    assert store.get("fleet.f[0]").status == "ready"
    with pytest.raises(StateError, match="not tainted"):
        store.untaint("fleet.f[0]")
    with pytest.raises(StateError, match="not in state"):
        store.taint("fleet.nope")


def test_json_columns_are_stored_with_sorted_keys(store: Store):
    create(store, "model.m", {"b": 1, "a": {"d": 2, "c": 3}})
    with store._read() as conn:
        raw = conn.execute("SELECT attributes FROM resources").fetchone()[0]
    assert raw == json.dumps({"a": {"c": 3, "d": 2}, "b": 1}, sort_keys=True)
    assert raw.index('"a"') < raw.index('"b"')


def test_outputs(store: Store):
    assert store.outputs() == {}
    store.set_outputs({"url": "http://127.0.0.1:9", "token": "s3cret", "n": [1, 2]},
                      sensitive={"token", "unknown"})
    assert store.outputs() == {"url": "http://127.0.0.1:9", "token": "s3cret", "n": [1, 2]}
    assert store.sensitive_outputs() == {"token"}
    store.set_outputs({"n": 3})
    assert store.outputs() == {"n": 3}
    assert store.sensitive_outputs() == frozenset()


# -- snapshot ------------------------------------------------------------------


def test_snapshot_contents(store: Store):
    create(store, "model.m")
    key = store.depose("model.m")
    create(store, "model.m")
    store.set_outputs({"o": 1}, {"o"})
    snap = store.snapshot()
    assert snap.lineage == store.lineage and snap.serial == store.serial
    assert snap.outputs == {"o": 1} and snap.sensitive_outputs == {"o"}
    assert snap.get("model.m", key).deposed == key
    assert list(snap.current()) == ["model.m"]
    assert [r.deposed for r in snap.deposed()] == [key]


def test_snapshot_is_consistent_under_concurrent_writes(state_location: str):
    """Each write adds one resource and one serial, so a torn read would show it."""
    open_store(state_location).close()
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            with open_store(state_location) as w:
                i = 0
                while not stop.is_set():
                    w.record_intent(f"fleet.f[{i}]", action="create", kind="replica",
                                    provider="local", attributes={"i": i})
                    i += 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        seen = set()
        with open_store(state_location, readonly=True) as reader:
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                snap = reader.snapshot()
                assert len(snap.resources) == snap.serial
                seen.add(snap.serial)
    finally:
        stop.set()
        t.join(10)
    assert not errors
    assert len(seen) > 1  # the writer really ran during the reads


def test_snapshot_of_10000_resources_is_fast(store: Store):
    now = "2026-01-01T00:00:00Z"
    with store._transaction(bump_serial=False) as conn:
        conn.executemany(
            "INSERT INTO resources (address, deposed, kind, provider, status, attributes, pending, dependencies, "
            "error, created_at, updated_at) VALUES (?, '', 'replica', 'local', 'ready', ?, NULL, '[\"model.m\"]', "
            "NULL, ?, ?)",
            [(f"fleet.f[{i}]", json.dumps({"port": i, "args": ["--x"] * 4}), now, now) for i in range(10_000)])
    start = time.perf_counter()
    snap = store.snapshot()
    elapsed = time.perf_counter() - start
    assert len(snap.resources) == 10_000
    # a bound against a hang, not the speed target (benchmarks/); a server round trip costs more
    assert elapsed < within(3.0 if type(store).__name__ == "PostgresStore" else 1.0)


def test_store_is_usable_from_another_thread(store: Store):
    t = threading.Thread(target=create, args=(store, "model.m"))
    t.start()
    t.join(10)
    assert store.get("model.m").status == "ready"


# -- read-only -----------------------------------------------------------------


def test_readonly_missing_state_is_empty_and_creates_nothing(tmp_path: Path):
    path = tmp_path / "sub" / "state.db"
    with StateStore.open_readonly(path) as ro:
        snap = ro.snapshot()
        assert (snap.lineage, snap.serial, snap.resources, snap.outputs) == (None, 0, [], {})
        assert ro.resources() == [] and ro.history() == [] and ro.audit_log() == []
        assert ro.current_lock() is None
        with pytest.raises(StateError, match="read-only"):
            create(ro, "model.m")
        with pytest.raises(StateError, match="read-only"):
            with ro.lock("plan"):
                pass
    assert list(tmp_path.iterdir()) == []


def test_readonly_reads_existing_state_and_refuses_writes(store: Store, state_location: str):
    create(store, "model.m")
    with open_store(state_location, readonly=True) as ro:
        assert ro.lineage == store.lineage
        assert ro.get("model.m").status == "ready"
        with pytest.raises(StateError, match="read-only"):
            ro.taint("model.m")
        with pytest.raises(StateError, match="read-only"):
            ro.audit("x")
    assert store.get("model.m").status == "ready"


# -- history and audit -----------------------------------------------------------


def test_history_newest_first_with_desired_config(store: Store):
    first = store.add_history(operation="apply", plan_hash="h1", summary={"add": 2},
                              who="alice@h", started_at="2026-01-01T00:00:00Z",
                              finished_at="2026-01-01T00:01:00Z", status="ok",
                              config_digest="d1", desired_config={"fleets": {"a": 1}})
    second = store.add_history(operation="destroy", plan_hash="h2", summary={"destroy": 2},
                               started_at=None, finished_at=None, status="failed",
                               config_digest="d2", desired_config=None)
    assert second > first
    entries = store.history()
    assert [e.id for e in entries] == [second, first]
    assert entries[0].who == default_who()
    assert entries[1].desired_config == {"fleets": {"a": 1}}
    assert entries[1].summary == {"add": 2}
    assert [e.id for e in store.history(limit=1)] == [second]
    assert store.get_history(first).plan_hash == "h1"
    assert store.get_history(9999) is None


def test_audit_log_is_append_only(store: Store, state_location: str):
    store.audit("taint", address="fleet.f[0]", details={"why": "test"}, who="bob@h")
    store.audit("state-rm", address="model.m")
    log = store.audit_log()
    assert [e.event for e in log] == ["state-rm", "taint"]
    assert log[1].details == {"why": "test"} and log[1].who == "bob@h"
    assert log[0].who == default_who() and log[0].at.endswith("Z")
    assert len(store.audit_log(limit=1)) == 1

    raw = raw_connection(state_location)
    try:
        for forge in ("UPDATE audit SET event = 'forged'", "DELETE FROM audit"):
            with pytest.raises(driver_error(state_location), match="append-only"):
                raw.execute(forge)
            raw.rollback()
    finally:
        raw.close()
    assert [e.event for e in store.audit_log()] == ["state-rm", "taint"]


# -- durability ------------------------------------------------------------------


def test_intent_survives_kill_9_of_the_writer(state_location: str):
    proc = run_child(f"""
        import os, signal
        from infraplan.state import open_store
        s = open_store({state_location!r})
        s.record_intent("fleet.f[0]", action="create", kind="replica", provider="local",
                        attributes={{"port": 8123}})
        os.kill(os.getpid(), signal.SIGKILL)
        s.record_result("fleet.f[0]", attributes={{"port": 8123, "pid": 1}})
    """)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with open_store(state_location) as s:
        r = s.get("fleet.f[0]")
        assert r is not None
        assert r.status == "creating"
        assert r.pending["action"] == "create"
        assert r.attributes == {"port": 8123}
        assert s.serial == 1


def test_closed_store_raises_state_error(state_location: str, tmp_path: Path):
    for s in (open_store(state_location), open_store(state_location, readonly=True),
              StateStore.open_readonly(tmp_path / "missing.db")):
        s.close()
        s.close()  # idempotent
        with pytest.raises(StateError, match="closed"):
            s.snapshot()
        with pytest.raises(StateError, match="closed"):
            s.audit("x")


def test_undone_write_inside_batch_does_not_bump(store: Store):
    create(store, "model.m")
    serial = store.serial
    with store.batch():
        with pytest.raises(StateError):
            with store.batch():
                store.taint("model.m")
                raise StateError("undo")
    assert store.get("model.m").status == "ready"
    assert store.serial == serial


def test_a_state_from_before_later_migrations_is_readable_without_upgrading(tmp_path):
    db = tmp_path / "old.db"
    with StateStore(db) as s:
        s.put("model.m", kind="model", attributes={"revision": "a"})
    conn = sqlite3.connect(db)
    later = migrations.known_names()[1:]
    conn.executemany("DELETE FROM _sqlite_migrations WHERE name = ?", [(n,) for n in later])
    for table in ("drift_runs", "drift_activity", "alerts", "rollbacks"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute("ALTER TABLE locks DROP COLUMN pid_started")
    conn.commit()
    conn.close()
    ro = StateStore.open_readonly(db)
    assert [r.address for r in ro.snapshot().resources] == ["model.m"]
    assert ro.current_lock() is None
    assert ro.rollbacks() == [] and ro.drift_runs() == []
    with StateStore(db) as rw:  # a writer upgrades it
        assert rw.rollbacks() == []
    conn = sqlite3.connect(db)
    assert {r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")} == set(migrations.known_names())


def test_state_files_are_private_to_their_owner(tmp_path):
    """The state (and its WAL and shared-memory files) holds provider ids and history: 0600."""
    db = tmp_path / "infraplan.db"
    with StateStore(db) as s:
        s.put("model.m", kind="model", attributes={"source": "hf://org/m"})
        for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            if f.exists():
                assert f.stat().st_mode & 0o777 == 0o600, f
    old = tmp_path / "old.db"
    old.touch(mode=0o644)
    old.chmod(0o644)
    with StateStore(old):
        pass
    assert old.stat().st_mode & 0o777 == 0o600

"""What only the PostgreSQL store does: its connection errors, the schema in a database, the lock's
session advisory lock (released by the server when its session ends), and losing the database
mid-run. The store's semantics on both backends are in test_store.py and test_lock.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest

from infraplan.errors import LockError, StateDamaged, StateError, StateUnreachable
from infraplan.state import BackendKind, StateLocation, open_store
from infraplan.state.api import redact_url
from infraplan.state.lock import HolderState, broken_notice
from helpers import postgres
from helpers.net import free_port
from helpers.paths import REPO
from helpers.timing import within


def with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


# -- locations and URLs ----------------------------------------------------------


def test_a_location_is_a_path_or_a_postgres_url():
    assert StateLocation.parse("infraplan.db").kind is BackendKind.SQLITE
    assert StateLocation.parse("/tmp/x/state.db").path.name == "state.db"
    for url in ("postgresql://u@h/db", "postgres://u@h:5433/db", "POSTGRESQL://u@h/db"):
        assert StateLocation.parse(url).kind is BackendKind.POSTGRES
    with pytest.raises(StateError, match=r"neither a file path nor a postgresql:// URL \(scheme 'mysql'"):
        StateLocation.parse("mysql://u:pw@h/db")


def test_a_password_is_never_shown():
    url = "postgresql://alice:s3cr%40t@db.example:5432/infra?sslmode=require&password=other"
    shown = redact_url(url)
    assert shown == "postgresql://alice:***@db.example:5432/infra?sslmode=require&password=***"
    loc = StateLocation.parse(url)
    assert str(loc) == loc.display == shown
    assert "s3cr" not in loc.without_password and "alice@db.example" in loc.without_password


# -- connection errors: one line, the URL without its password -------------------


def test_connection_refused_is_one_line_naming_the_url_without_its_password():
    url = f"postgresql://root:hunter2@127.0.0.1:{free_port()}/test"
    start = time.monotonic()
    with pytest.raises(StateUnreachable) as exc:
        open_store(url)
    assert time.monotonic() - start < within(2.0)  # refused at once, not a pool timeout
    msg = str(exc.value)
    assert "\n" not in msg and "hunter2" not in msg
    assert msg.startswith(f"cannot connect to the state database {redact_url(url)}: ")
    assert "Connection refused" in msg


def test_a_missing_database_or_a_bad_url_is_named(postgres_url: str):
    missing = postgres.database_url(postgres_url, "no_such_database_here")
    with pytest.raises(StateUnreachable, match='database "no_such_database_here" does not exist'):
        open_store(missing)
    with pytest.raises(StateError, match=r"is not a valid PostgreSQL URL: invalid URI query parameter"):
        open_store(with_password(postgres_url, "pw") + "?bogus=1")


def test_a_schema_newer_than_this_infraplan_is_refused(postgres_url: str):
    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO infraplan_migrations (migration_set, name, applied_at) "
                     "VALUES ('infraplan', 'm999_from_the_future', 'x')")
    for readonly in (False, True):
        with pytest.raises(StateError, match="state database .* was written by a newer infraplan "
                                             r"\(unknown schema migrations: m999_from_the_future\)"):
            open_store(postgres_url, readonly=readonly)


def test_readonly_on_an_empty_database_reads_empty_and_creates_nothing(postgres_url: str):
    with open_store(postgres_url, readonly=True) as ro:
        assert (ro.lineage, ro.serial, ro.resources(), ro.history(), ro.current_lock()) == (None, 0, [], [], None)
        with pytest.raises(StateError, match="read-only"):
            ro.audit("x")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables "
                            "WHERE table_schema = current_schema()").fetchone()[0] == 0


def test_a_database_of_another_program_is_refused(postgres_url: str):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE meta (k text)")
    with pytest.raises(StateError, match="has a `meta` table but no infraplan schema migrations recorded"):
        open_store(postgres_url)


# -- losing the database mid-run -------------------------------------------------


def test_losing_the_session_mid_batch_writes_nothing_of_it_and_frees_the_lock(postgres_url: str):
    with open_store(postgres_url) as s:
        s.put("model.m", kind="model", attributes={"v": 1})
        serial = s.serial
        with pytest.raises(StateUnreachable) as exc:
            with s.lock("apply"):
                with s.batch():
                    s.put("model.n", kind="model", attributes={"v": 2})
                    assert postgres.end_sessions(postgres_url) >= 1  # the server drops every session
                    s.put("model.o", kind="model", attributes={"v": 3})
        msg = str(exc.value)
        assert "\n" not in msg and msg.startswith(f"lost the connection to the state database {postgres_url} (")
    with open_store(postgres_url) as s:
        assert [r.address for r in s.resources()] == ["model.m"] and s.serial == serial
        assert s.current_lock() is not None and s.current_lock().holder_state() is HolderState.GONE
        with s.lock("apply"):  # the lost session's lock is free: its row is broken
            pass
        assert s.audit_log(limit=1)[0].event == "lock-broken"


# -- the lock's session half -------------------------------------------------------


def test_a_row_whose_session_is_gone_is_stale_even_from_another_host(postgres_url: str):
    """SQLite never breaks a lock held from another host; on PostgreSQL the server knows its session ended."""
    with open_store(postgres_url) as s:
        with s._transaction(bump_serial=False) as conn:
            conn.execute("INSERT INTO locks (slot, id, who, pid, host, operation, since) "
                         "VALUES (1, 'far', 'carol', 1, 'elsewhere', 'apply', 'then')")
        held = s.current_lock()
        assert held.session_alive is False and held.holder_state() is HolderState.GONE
        told = []
        with s.lock("apply", on_broken=told.append):
            assert s.current_lock().session_alive is True
        assert [t.id for t in told] == ["far"]
        line = broken_notice(told[0])
        assert "its database session ended" in line and "carol (pid 1 on elsewhere)" in line and "\n" not in line
        event = s.audit_log(limit=1)[0]
        assert event.event == "lock-broken" and event.details["host"] == "elsewhere"


HOLDER = """
    import json, sys
    from infraplan.state import open_store
    s = open_store({url!r})
    with s.lock("apply", who="alice") as info:
        print(json.dumps(info.as_dict()), flush=True)
        sys.stdin.readline()
        try:
            s.put("model.late", kind="model", attributes={{}})
            print("wrote", flush=True)
        except Exception as e:
            print(type(e).__name__, flush=True)
"""


def test_force_unlock_ends_the_holders_session_so_it_writes_nothing_more(postgres_url: str):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER).format(url=postgres_url)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        held = json.loads(proc.stdout.readline())
        with open_store(postgres_url) as s:
            with pytest.raises(LockError, match="it is released when that run ends or its database session closes"):
                with s.lock("apply"):
                    pass
            assert s.current_lock().holder_state() is HolderState.ALIVE
            s.force_unlock(held["id"], who="ops")
            with s.lock("apply") as mine:  # at once: the holder's session (and advisory lock) is gone
                proc.stdin.write("go\n")
                proc.stdin.flush()
                assert proc.stdout.readline().strip() == "StateUnreachable"
                assert s.current_lock() == mine
            assert s.get("model.late") is None
            assert [(e.event, e.who) for e in s.audit_log()] == [("force-unlock", "ops")]
    finally:
        proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_a_row_edited_into_something_infraplan_cannot_read_is_one_line(postgres_url: str):
    with open_store(postgres_url) as s:
        s.put("model.m", kind="model", attributes={"v": 1})
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE resources SET attributes = '{not json' WHERE address = 'model.m'")
    with open_store(postgres_url, readonly=True) as s, pytest.raises(StateDamaged) as exc:
        s.snapshot()
    assert str(exc.value).startswith(f"state is damaged at {postgres_url}: a row cannot be read as infraplan wrote it")
    assert "\n" not in str(exc.value)

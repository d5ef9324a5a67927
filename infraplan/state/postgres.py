"""The PostgreSQL state store: one state shared by a team, on a database server.

The logic is `infraplan.state.sql_store.SqlStore`, the same as the SQLite file's; this
module adds the connections (psycopg 3 through a `psycopg_pool.ConnectionPool`, one per
URL and process), the schema in the database (the same migration history), and the
lock's database half:

- Each transaction borrows a pooled connection and gives it back, except while this store
  holds the state lock: then every read and write goes through the one session that
  holds it, so a lost session cannot go on writing as if it held the lock.
- The lock is the `locks` row (who, host, pid, operation, since: what a refusal names)
  plus a session-level `pg_try_advisory_lock` on that session. Taking it never waits. The
  server drops an advisory lock when its session ends (a killed process on any host), so
  a row whose advisory lock is free is stale, and the next taker breaks it (audited).
- A connection refused, a wrong URL or database, or a connection lost mid-run is a
  StateUnreachable with one line naming the URL (never its password); what was committed
  before stays committed, a transaction that was open is rolled back by the server.

Only a file has a `.backup` copy, file modes and a page-level integrity scan: those
are SQLite's (a database server has its own backups and checksums).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import zlib
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolTimeout

from infraplan.errors import StateDamaged, StateError, StateUnreachable
from infraplan.state import migrations as _migrations
from infraplan.state.api import BackendKind, StateLocation, url_secrets
from infraplan.state.lock import LockInfo
from infraplan.state.sql_store import SqlStore

# the pool logs each failed reconnect as a warning; infraplan reports the failure itself, once
# (INFRAPLAN_LOG still shows them: the CLI gives the psycopg logger its handler)
logging.getLogger("psycopg").addHandler(logging.NullHandler())

#: seconds to wait for a connection (a server that does not answer)
CONNECT_TIMEOUT_S = 5
#: connections one process keeps per URL (a store uses one at a time; the lock pins one)
POOL_MAX = 8
#: seconds `force-unlock` waits for the session it ended to be gone
END_SESSION_WAIT_S = 3.0
#: the first key of every infraplan advisory lock (ASCII "infp"), the second names what is locked
LOCK_CLASS = 0x696E6670
#: the second key of the lock taken while migrating the schema
MIGRATION_LOCK = 0
#: the second key of the lock an audit append holds to its transaction's end (workspace keys are positive)
AUDIT_LOCK = -1
DEFAULT_WORKSPACE = "default"
#: sqlstate classes of a lost or refused connection (08: connection exception, 57P: operator intervention)
_CONNECTION_STATES = ("08", "57P")


def lock_key(workspace: str = DEFAULT_WORKSPACE) -> int:
    """The advisory lock's second key for a workspace's state (1 .. 2**31-1; 0 is the migration lock)."""
    return zlib.crc32(workspace.encode()) % 0x7FFFFFFE + 1


class _Connection:
    """A psycopg connection speaking the store's SQL: `?` placeholders, explicit BEGIN/COMMIT."""

    _translated: dict[str, str] = {}

    def __init__(self, raw: psycopg.Connection):
        self.raw = raw

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)

    @classmethod
    def _sql(cls, sql: str) -> str:
        out = cls._translated.get(sql)
        if out is None:
            out = cls._translated[sql] = sql.replace("%", "%%").replace("?", "%s")
        return out

    def execute(self, sql: str, params: Iterable = ()) -> psycopg.Cursor:
        params = list(params)
        if not params:
            return self.raw.execute(sql)  # no parameters: sent as written
        return self.raw.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Iterable]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(self._sql(sql), [list(r) for r in rows])


def _reason(exc: BaseException, secrets: list[str]) -> str:
    """A driver message on one line, without the password it might quote."""
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    text = (primary or str(exc)).strip().removeprefix("connection failed: ")
    text = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    text = text.replace("FATAL:  ", "")
    for s in secrets:
        text = text.replace(s, "***")
    return text or type(exc).__name__


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(_CONNECTION_STATES)


_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def _reset(conn: psycopg.Connection) -> None:
    """A connection going back to the pool holds no lock of ours."""
    conn.execute("SELECT pg_advisory_unlock_all()")


def _pool(location: StateLocation) -> ConnectionPool:
    """The process's pool for `location`; the first connection is made here, so a server that
    cannot be reached is one clear error at once (not a pool timeout later)."""
    url = location.target
    with _pools_lock:
        pool = _pools.get(url)
        if pool is not None and not pool.closed:
            return pool
        secrets = url_secrets(url)
        try:
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True).close()
        except psycopg.ProgrammingError as e:  # libpq could not parse the URL
            raise StateError(f"state URL {location.display} is not a valid PostgreSQL URL: "
                             f"{_reason(e, secrets)}") from None
        except psycopg.Error as e:
            raise StateUnreachable(f"cannot connect to the state database {location.display}: "
                                   f"{_reason(e, secrets)}") from None
        # min_size 0: no connection is kept open, or re-made in the background, for a store nobody uses
        pool = ConnectionPool(url, min_size=0, max_size=POOL_MAX, open=False, name="infraplan-state",
                              kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
                              reset=_reset, check=ConnectionPool.check_connection, timeout=CONNECT_TIMEOUT_S)
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout:
            pool.close(timeout=0)
            raise StateUnreachable(f"cannot connect to the state database {location.display}: "
                                   f"no connection within {CONNECT_TIMEOUT_S} s") from None
        _pools[url] = pool
        return pool


def close_pool(location: StateLocation | str) -> None:
    """Close this process's connections to `location` (before its database is dropped)."""
    url = StateLocation.parse(location).target
    with _pools_lock:
        pool = _pools.pop(url, None)
    if pool is not None:
        pool.close(timeout=1)


@atexit.register
def _close_pools() -> None:
    with _pools_lock:
        for pool in _pools.values():
            pool.close(timeout=1)
        _pools.clear()


class PostgresStore(SqlStore):
    """Read and write one infraplan state held in a PostgreSQL database.

    `PostgresStore(url)` connects and brings the schema up to date (creating it in an empty
    database); `PostgresStore.open_readonly(url)` never changes anything: a database without
    the schema reads as an empty state.
    """

    BEGIN_WRITE = "BEGIN"

    @classmethod
    def _serialize_audit(cls, conn) -> None:
        # concurrent appenders queue here until the appending transaction ends: one chain, no fork
        conn.execute("SELECT pg_advisory_xact_lock(?, ?)", [LOCK_CLASS, AUDIT_LOCK])

    # a read sees one snapshot, as a read transaction on SQLite does
    BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    DB_ERROR = psycopg.Error

    def __init__(self, url: str | StateLocation, *, readonly: bool = False, secrets: Iterable[str] = (),
                 workspace: str = DEFAULT_WORKSPACE):
        location = StateLocation.parse(url)
        if location.kind is not BackendKind.POSTGRES:
            raise StateError(f"{location.display} is not a postgresql:// URL")
        super().__init__(location, readonly=readonly, secrets=secrets)
        self._secret_parts = url_secrets(location.target)
        self._lock_key = lock_key(workspace)
        self._pinned: _Connection | None = None  # the session holding the state lock
        self._column_cache: dict[str, set[str]] = {}
        self._pool = _pool(location)
        self._open()

    @classmethod
    def open_readonly(cls, url: str | StateLocation, *, secrets: Iterable[str] = ()) -> PostgresStore:
        """Open for reading only: no schema created or migrated, no lock taken."""
        return cls(url, readonly=True, secrets=secrets)

    def _open(self) -> None:
        conn = self._connect()
        try:
            has_table = bool(self._columns(conn, _migrations.PG_MIGRATIONS_TABLE))
            applied = _migrations.pg_applied_names(conn, has_table)
            error = _migrations.newer_error(applied, self.location, what="state database")
            if error:
                raise error
            if not has_table and not self.readonly and self._columns(conn, "meta"):
                raise StateError(f"database {self.location} has a `meta` table but no infraplan schema "
                                 "migrations recorded: it is not an infraplan state; name another database")
            if self.readonly:
                self._has_schema = bool(applied)
                return
            if len(applied) < len(_migrations.MIGRATIONS):
                self._migrate(conn)
            self._has_schema = True
        except psycopg.Error as e:
            raise self._db_error(e, "open") from None
        finally:
            self._disconnect(conn)

    def _migrate(self, conn: _Connection) -> None:
        """Apply what is pending in one transaction, under a lock so two first openers do not race."""
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?, ?)", [LOCK_CLASS, MIGRATION_LOCK])
            _migrations.pg_apply(conn, lambda table: self._columns(conn, table, cached=False))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        self._column_cache.clear()

    def close(self) -> None:
        """Give the connections back (idempotent); a lock still held is released with its session."""
        with self._mutex:
            self._closed = True
            self._drop_session_lock()

    def __enter__(self) -> PostgresStore:
        return self

    # -- the backend's part of SqlStore ----------------------------------

    def _connect(self) -> _Connection:
        self._check_open()
        if self._pinned is not None:
            return self._pinned
        try:
            return _Connection(self._pool.getconn())
        except PoolTimeout:
            raise StateUnreachable(f"cannot connect to the state database {self.location}: "
                                   f"no connection within {CONNECT_TIMEOUT_S} s") from None

    def _disconnect(self, conn: _Connection) -> None:
        if conn is not self._pinned:
            self._pool.putconn(conn.raw)

    def _has_database(self) -> bool:
        return True

    def _columns(self, conn: Any, table: str, *, cached: bool = True) -> set[str]:
        if cached and table in self._column_cache:
            return self._column_cache[table]
        cols = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ?", [table]).fetchall()}
        if cols and cached:
            self._column_cache[table] = cols  # columns are only ever added
        return cols

    def _db_error(self, exc: Exception, doing: str) -> StateError:
        reason = _reason(exc, self._secret_parts)
        if _is_connection_error(exc):
            return StateUnreachable(f"lost the connection to the state database {self.location} ({reason}); "
                                    "what was recorded before stays recorded: run `infraplan plan` once it is back")
        return StateError(f"cannot {doing} state {self.location}: {reason}")

    def _undecodable(self, exc: Exception) -> StateError:
        what = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return StateDamaged(f"state is damaged at {self.location}: a row cannot be read as infraplan wrote it "
                            f"({what}); was it edited by hand?", path=self.location.display, problems=[what])

    # -- the lock's database half ------------------------------------------

    def _take_session_lock(self) -> bool:
        with self._mutex:
            if self._pinned is not None:  # this store holds it already
                return False
            conn = self._connect()
            try:
                got = conn.execute("SELECT pg_try_advisory_lock(?, ?)", [LOCK_CLASS, self._lock_key]).fetchone()[0]
            except psycopg.Error as e:
                self._pool.putconn(conn.raw)
                raise self._db_error(e, "lock") from None
            if not got:
                self._pool.putconn(conn.raw)
                return False
            self._pinned = conn
            return True

    def _drop_session_lock(self) -> None:
        with self._mutex:
            conn, self._pinned = self._pinned, None
            if conn is None:
                return
            try:
                conn.execute("SELECT pg_advisory_unlock(?, ?)", [LOCK_CLASS, self._lock_key])
            except psycopg.Error:
                pass  # the session is gone, and its lock with it
            finally:
                self._pool.putconn(conn.raw)

    _HOLDERS = ("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid::bigint = ? AND objid::bigint = ?")

    def _annotate_lock(self, conn: Any, info: LockInfo) -> LockInfo:
        import dataclasses

        alive = conn.execute(f"SELECT EXISTS ({self._HOLDERS})", [LOCK_CLASS, self._lock_key]).fetchone()[0]
        return dataclasses.replace(info, session_alive=bool(alive))

    def _end_holder_session(self, conn: Any, info: LockInfo) -> None:
        """End the database session holding the advisory lock (not ours): a hung run loses its
        session, so it can write nothing more, and its lock is free."""
        pids = [r[0] for r in conn.execute(self._HOLDERS + " AND pid <> pg_backend_pid()",
                                           [LOCK_CLASS, self._lock_key]).fetchall()]
        ended = []
        for pid in pids:
            conn.execute("SAVEPOINT end_holder")
            try:
                if conn.execute("SELECT pg_terminate_backend(?)", [pid]).fetchone()[0]:
                    ended.append(pid)
                conn.execute("RELEASE end_holder")
            except psycopg.Error:  # not allowed to: the lock frees when that session ends
                conn.execute("ROLLBACK TO end_holder")
                conn.execute("RELEASE end_holder")
        # the signal is sent at once, the session ends a moment later: wait for it, so the next
        # taker finds the lock free
        deadline = time.monotonic() + END_SESSION_WAIT_S
        while ended and time.monotonic() < deadline:
            held = {r[0] for r in conn.execute(self._HOLDERS, [LOCK_CLASS, self._lock_key]).fetchall()}
            if not held & set(ended):
                break
            time.sleep(0.02)

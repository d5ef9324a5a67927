"""The state store's logic, written once in SQL both SQLite and PostgreSQL run.

Every write method is its own transaction so the engine can record an intent before each
provider call and the result right after it, and a crash in between loses nothing that
was recorded. Writes that change resources or outputs bump the serial once per
transaction; `batch()` groups several writes into one transaction (and one bump).

A store object may be shared between threads: a re-entrant mutex serialises its use of
the database (a `batch()` holds it until the batch ends).

A backend subclass says how to get a connection (`_connect`/`_disconnect`), how it begins
transactions, which exceptions its driver raises and what they mean, and how to list a
table's columns. Statements use `?` placeholders; a backend whose driver wants another
style translates them.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

from infraplan.errors import StateError
from infraplan.state import lock as _lock
from infraplan.state.api import StateLocation
from infraplan.state.lock import LockInfo, default_who, utc_now
from infraplan.state.records import (
    ACTION_STATUS,
    HISTORY_COLUMNS,
    RESOURCE_COLUMNS,
    RESOURCE_KEYS,
    RESOURCE_STATUSES,
    AuditEntry,
    DriftRun,
    HistoryEntry,
    ResourceRecord,
    StateSnapshot,
    dumps,
    history_from_row,
    loads,
    record_from_row,
    row_from_record,
)
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind
from infraplan.util.secrets import SecretBook

_UPSERT_SQL = (
    f"INSERT INTO resources ({RESOURCE_COLUMNS}) VALUES ({', '.join('?' * len(RESOURCE_KEYS))}) "
    "ON CONFLICT(address, deposed) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in RESOURCE_KEYS[2:])
)
#: what decoding a damaged row raises besides the driver's errors (bad JSON, an unknown kind, a missing meta row)
_DECODE_ERRORS = (ValueError, TypeError, KeyError)


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list: ...
    def __iter__(self) -> Iterator: ...


class Connection(Protocol):
    """The part of a DB-API connection the store uses (sqlite3's, or the PostgreSQL adapter)."""

    @property
    def in_transaction(self) -> bool: ...
    def execute(self, sql: str, params: Iterable = ...) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Iterable]) -> Any: ...


def _limit(limit: int | None) -> tuple[str, list]:
    return ("", []) if limit is None else (" LIMIT ?", [limit])


class SqlStore:
    """One state, on a backend chosen by the subclass (see `infraplan.state.api.Store`)."""

    #: statements that open a write / a read transaction
    BEGIN_WRITE: ClassVar[str] = "BEGIN"
    BEGIN_READ: ClassVar[str] = "BEGIN"
    #: the driver's base exception
    DB_ERROR: ClassVar[type[Exception]] = Exception

    location: StateLocation

    def __init__(self, location: StateLocation, *, readonly: bool, secrets: Iterable[str]):
        self.location = location
        self.readonly = readonly
        #: secrets are sealed on every write and the known ones restored on every read (util.secrets)
        self._book = SecretBook(secrets)
        self._mutex = threading.RLock()
        self._depth = 0  # nesting of _transaction
        self._dirty = False  # resources/outputs changed in the open transaction
        self._txn: Connection | None = None  # the connection of the open transaction
        self._has_schema = False
        self._closed = False

    # -- what a backend provides -----------------------------------------

    def _connect(self) -> Connection:
        """A connection for one transaction (the caller holds the mutex)."""
        raise NotImplementedError

    def _disconnect(self, conn: Connection) -> None:
        """Done with a connection `_connect` gave."""

    def _has_database(self) -> bool:
        """Whether there is a database to read (a read-only store of a missing file has none)."""
        raise NotImplementedError

    def _columns(self, conn: Connection, table: str) -> set[str]:
        """Column names of `table` (empty when there is no such table)."""
        raise NotImplementedError

    def _db_error(self, exc: Exception, doing: str) -> StateError:
        """The StateError for a driver error met while `doing` ("read" or "write")."""
        return StateError(f"cannot {doing} state {self.location}: {exc}")

    def _raise_if_damaged(self) -> None:
        """Raise StateDamaged if decoding a row just failed because the state is damaged."""

    def _undecodable(self, exc: Exception) -> StateError | None:
        """The error for a row a read could not decode, where `_raise_if_damaged` has no scan to say
        more; None leaves `exc` as it is."""
        return None

    def _annotate_lock(self, conn: Connection, info: LockInfo) -> LockInfo:
        """`info` as read from the lock row, with what the backend knows of its holder."""
        return info

    def _take_session_lock(self) -> bool | None:
        """Take the backend's own lock for this store's session: True if taken (a lock row
        left now is stale), False if another session holds it, None if the backend has none."""
        return None

    def _drop_session_lock(self) -> None:
        """Give back what `_take_session_lock` took (no-op where nothing was taken)."""

    def _end_holder_session(self, conn: Connection, info: LockInfo) -> None:
        """`force-unlock`: end the session that holds `info`'s lock, where the backend has one."""

    # -- opening -----------------------------------------------------------

    def close(self) -> None:
        """Close the store (idempotent)."""
        with self._mutex:
            self._closed = True

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"<{type(self).__name__} {self.location} {mode}>"

    # -- transactions ----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StateError(f"state {self.location} is closed")

    @contextlib.contextmanager
    def _transaction(self, *, bump_serial: bool = True, single: bool = False) -> Iterator[Connection]:
        """A write transaction; nested calls become savepoints of the outer one.

        The serial is bumped once, at the outermost commit, if any write inside
        called `_changed()` and `bump_serial` is set on the outermost call.
        """
        if self.readonly and not self._closed:
            raise StateError(f"state {self.location} is opened read-only")
        with self._mutex:
            self._check_open()
            if self._depth:
                conn = self._txn
                assert conn is not None
                # nested in a batch: a savepoint, except for writes that mutate with one
                # statement after their checks (they happen whole or not at all)
                savepoint = None if single else f"sp_{secrets.token_hex(4)}"
                if savepoint:
                    conn.execute(f"SAVEPOINT {savepoint}")
                self._depth += 1
                was_dirty = self._dirty
                try:
                    yield conn
                except BaseException:
                    self._dirty = was_dirty
                    if savepoint and conn.in_transaction:
                        conn.execute(f"ROLLBACK TO {savepoint}")
                        conn.execute(f"RELEASE {savepoint}")
                    raise
                else:
                    if savepoint:
                        conn.execute(f"RELEASE {savepoint}")
                finally:
                    self._depth -= 1
                return
            conn = self._connect()
            try:
                try:
                    conn.execute(self.BEGIN_WRITE)
                except self.DB_ERROR as e:
                    raise self._db_error(e, "write") from None
                self._depth = 1
                self._dirty = False
                self._txn = conn
                try:
                    yield conn
                    if bump_serial and self._dirty:
                        conn.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                                     "WHERE key = 'serial'")
                    conn.execute("COMMIT")
                except BaseException as e:
                    self._rollback(conn)
                    if isinstance(e, _DECODE_ERRORS + (self.DB_ERROR,)):
                        self._raise_if_damaged()
                    if isinstance(e, self.DB_ERROR):
                        raise self._db_error(e, "write") from e
                    raise
                finally:
                    self._depth = 0
                    self._dirty = False
                    self._txn = None
            finally:
                self._disconnect(conn)

    def _rollback(self, conn: Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except self.DB_ERROR:
            pass  # the connection is gone, and its transaction with it

    def _changed(self) -> None:
        self._dirty = True

    @contextlib.contextmanager
    def batch(self) -> Iterator[SqlStore]:
        """Group writes into one transaction and at most one serial bump.

        Each write is applied when called; all are committed when the block
        exits, or all rolled back if it raises. Other threads wait meanwhile.
        """
        with self._transaction():
            yield self

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection | None]:
        """A read transaction (or the open write transaction); None if no schema."""
        with self._mutex:
            self._check_open()
            if self._depth:
                yield self._txn
                return
            if not self._has_database() or not self._has_schema:
                yield None
                return
            conn = self._connect()
            try:
                if conn.in_transaction:
                    yield conn
                    return
                conn.execute(self.BEGIN_READ)
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except _DECODE_ERRORS + (self.DB_ERROR,) as e:
                self._rollback(conn)
                self._raise_if_damaged()
                if isinstance(e, self.DB_ERROR):
                    raise self._db_error(e, "read") from e
                damaged = self._undecodable(e)
                if damaged is not None:
                    raise damaged from None
                raise
            finally:
                self._disconnect(conn)

    def _read_one(self, sql: str, params: Iterable = ()) -> tuple | None:
        with self._read() as conn:
            return None if conn is None else conn.execute(sql, list(params)).fetchone()

    @staticmethod
    def _insert(conn: Connection, table: str, row: dict) -> int:
        """Insert one row of a table whose key is `id`; its id."""
        cols = list(row)
        return int(conn.execute(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) RETURNING id",
            [row[c] for c in cols]).fetchall()[0][0])

    @staticmethod
    def _upsert_rows(conn: Connection, table: str, rows: list[dict], pk: tuple[str, ...]) -> None:
        """Insert `rows` (all with the same keys), updating those whose `pk` exists."""
        if not rows:
            return
        cols = list(rows[0])
        rest = [c for c in cols if c not in pk]
        conflict = (f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in rest)}" if rest else "DO NOTHING")
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT ({', '.join(pk)}) {conflict}",
            [[r.get(c) for c in cols] for r in rows])

    def _has_table(self, conn: Connection, name: str) -> bool:
        return bool(self._columns(conn, name))

    # -- meta ------------------------------------------------------------

    @staticmethod
    def _meta(conn: Connection) -> tuple[str, int]:
        rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('lineage', 'serial')").fetchall())
        return rows["lineage"], int(rows["serial"])

    def _secrets(self, conn: Connection) -> SecretBook:
        """The book sealing for this state (its lineage is the HMAC key)."""
        lineage = self._meta(conn)[0]
        if self._book.salt != lineage:
            self._book = self._book.with_salt(lineage)
        return self._book

    def _open_record(self, conn: Connection, record: ResourceRecord) -> ResourceRecord:
        book = self._secrets(conn)
        record.attributes = book.unseal(record.attributes)
        if record.pending is not None:
            record.pending = book.unseal(record.pending)
        return record

    @property
    def lineage(self) -> str | None:
        """Random id given to this state when it was created (None if no state)."""
        with self._read() as conn:
            return None if conn is None else self._meta(conn)[0]

    @property
    def serial(self) -> int:
        """Counter bumped by every write transaction that changes resources or outputs."""
        with self._read() as conn:
            return 0 if conn is None else self._meta(conn)[1]

    # -- resource reads --------------------------------------------------

    @staticmethod
    def _get(conn: Connection, address: str, deposed: str) -> ResourceRecord | None:
        row = conn.execute(
            f"SELECT {RESOURCE_COLUMNS} FROM resources WHERE address = ? AND deposed = ?",
            [address, deposed],
        ).fetchone()
        return record_from_row(row) if row else None

    @staticmethod
    def _all(conn: Connection, include_deposed: bool) -> list[ResourceRecord]:
        where = "" if include_deposed else " WHERE deposed = ''"
        rows = conn.execute(
            f"SELECT {RESOURCE_COLUMNS} FROM resources{where} ORDER BY address, deposed"
        ).fetchall()
        return [record_from_row(r) for r in rows]

    def get(self, address: str, deposed: str = "") -> ResourceRecord | None:
        """The object at `address` (current one unless `deposed` is given)."""
        with self._read() as conn:
            record = None if conn is None else self._get(conn, address, deposed)
            return None if record is None else self._open_record(conn, record)

    def resources(self, include_deposed: bool = True) -> list[ResourceRecord]:
        """All objects, ordered by address then deposed key."""
        with self._read() as conn:
            return [] if conn is None else [self._open_record(conn, r) for r in self._all(conn, include_deposed)]

    def snapshot(self) -> StateSnapshot:
        """Lineage, serial, resources and outputs, read in one transaction."""
        with self._read() as conn:
            if conn is None:
                return StateSnapshot.empty()
            lineage, serial = self._meta(conn)
            values, sensitive = self._outputs(conn)
            resources = [self._open_record(conn, r) for r in self._all(conn, True)]
            return StateSnapshot(lineage, serial, resources, self._secrets(conn).unseal(values), sensitive)

    # -- resource writes -------------------------------------------------

    def _must_get(self, conn: Connection, address: str, deposed: str) -> ResourceRecord:
        record = self._get(conn, address, deposed)
        if record is None:
            what = f"{address} (deposed {deposed})" if deposed else address
            raise StateError(f"{what} is not in state")
        return record

    def _upsert(self, conn: Connection, existing: ResourceRecord | None, changes: dict) -> None:
        """Upsert a full row: `existing` (as stored) overlaid with `changes`.

        Full rows because the INSERT half of an upsert is checked for NOT NULL columns.
        """
        row = row_from_record(existing) if existing is not None else {}
        row.update(changes)
        conn.execute(_UPSERT_SQL, [row.get(c) for c in RESOURCE_KEYS])
        self._changed()

    def record_intent(self, address: str, *, action: str, kind: ResourceKind, provider: str | None,
                      attributes: dict, dependencies: Iterable[str] = (),
                      deposed: str = "") -> None:
        """Record, before a provider call, what is about to be done to `address`.

        A new object is inserted as "creating" with `attributes` (they already
        hold identity allocated before the call, such as a port). For an existing
        object, update/delete keep the old attributes and dependencies; the
        intended ones go in `pending`. Create replaces them.
        """
        if action not in ACTION_STATUS:
            raise ValueError(f"unknown action {action!r}; expected one of {sorted(ACTION_STATUS)}")
        now = utc_now()
        deps = list(dependencies)
        with self._transaction(single=True) as conn:
            attributes = self._secrets(conn).seal(attributes)
            pending = {"action": action, "attributes": attributes, "dependencies": deps, "since": now}
            existing = self._get(conn, address, deposed)
            row: dict[str, Any] = {
                "address": address, "deposed": deposed, "kind": str(kind), "provider": provider,
                "status": ACTION_STATUS[action], "pending": dumps(pending), "updated_at": now,
            }
            if existing is None:
                if action != Action.CREATE:
                    raise StateError(f"cannot record a {action} of {address}: it is not in state")
                row["created_at"] = now
                row["error"] = None
            if action == Action.CREATE:
                row["attributes"] = dumps(attributes)
                row["dependencies"] = dumps(deps)
            self._upsert(conn, existing, row)

    def record_result(self, address: str, *, attributes: dict, status: str = "ready",
                      deposed: str = "", dependencies: Iterable[str] | None = None) -> None:
        """Record a provider call's outcome: attributes and status; clears pending and error.

        Dependencies default to those of the pending intent, else stay as they were.
        """
        if status not in RESOURCE_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._transaction(single=True) as conn:
            if dependencies is not None:
                deps = list(dependencies)
            else:
                existing = self._must_get(conn, address, deposed)
                if existing.pending and "dependencies" in existing.pending:
                    deps = list(existing.pending["dependencies"])
                else:
                    deps = existing.dependencies
            # one UPDATE: the other columns stay as stored (no decoding and re-encoding the row,
            # which was most of the cost of a result in large applies)
            updated = conn.execute(
                "UPDATE resources SET status = ?, attributes = ?, dependencies = ?, pending = NULL, "
                "error = NULL, updated_at = ? WHERE address = ? AND deposed = ?",
                [status, dumps(self._secrets(conn).seal(attributes)), dumps(deps), utc_now(), address, deposed],
            ).rowcount
            if not updated:
                self._must_get(conn, address, deposed)  # raises: not in state
            self._changed()

    def put(self, address: str, *, kind: ResourceKind, attributes: dict, provider: str | None = None,
            dependencies: Iterable[str] = ()) -> None:
        """Insert or overwrite an object that needs no provider call (models, fleet entries)."""
        now = utc_now()
        with self._transaction(single=True) as conn:
            existing = self._get(conn, address, "")
            row = {"address": address, "deposed": "", "kind": str(kind), "provider": provider,
                   "status": "ready", "attributes": dumps(self._secrets(conn).seal(attributes)),
                   "dependencies": dumps(list(dependencies)), "pending": None, "error": None,
                   "updated_at": now}
            if existing is None:
                row["created_at"] = now
            self._upsert(conn, existing, row)

    def undepose(self, address: str, key: str) -> None:
        """Make deposed object `key` current again (a create-before-destroy replacement failed)."""
        with self._transaction() as conn:
            self._must_get(conn, address, key)
            if self._get(conn, address, "") is not None:
                raise StateError(f"cannot restore {address} (deposed {key}): a current object exists")
            conn.execute(
                "UPDATE resources SET deposed = '', updated_at = ? WHERE address = ? AND deposed = ?",
                [utc_now(), address, key],
            )
            self._changed()

    def record_failure(self, address: str, error: str, *, deposed: str = "") -> None:
        """Mark `address` failed; attributes and pending stay for the next plan to reconcile."""
        with self._transaction(single=True) as conn:
            existing = self._must_get(conn, address, deposed)
            self._upsert(conn, existing, {"status": "failed", "error": str(error), "updated_at": utc_now()})

    def remove(self, address: str, *, deposed: str = "", missing_ok: bool = False) -> bool:
        """Delete one object from state. Returns whether it was there."""
        with self._transaction(single=True) as conn:
            n = conn.execute("DELETE FROM resources WHERE address = ? AND deposed = ?",
                             [address, deposed]).rowcount
            if n:
                self._changed()
            elif not missing_ok:
                what = f"{address} (deposed {deposed})" if deposed else address
                raise StateError(f"{what} is not in state")
            return bool(n)

    def depose(self, address: str) -> str:
        """Move the current object of `address` to a new deposed key and return the key."""
        with self._transaction() as conn:
            self._must_get(conn, address, "")
            while True:
                key = secrets.token_hex(4)
                if self._get(conn, address, key) is None:
                    break
            conn.execute(
                "UPDATE resources SET deposed = ?, updated_at = ? WHERE address = ? AND deposed = ''",
                [key, utc_now(), address],
            )
            self._changed()
            return key

    def move(self, src: str, dst: str) -> list[str]:
        """Rename `src` (and its children `src[...]`) to `dst`; returns the new addresses.

        Dependencies of other objects that name a moved address are rewritten.
        """
        if src == dst:
            raise StateError(f"cannot move {src} onto itself")
        match = "address = ? OR substr(address, 1, ?) = ?"

        def params(a: str) -> list:
            return [a, len(a) + 1, a + "["]

        def rename(a: str) -> str:
            return dst + a[len(src):] if a == src or a.startswith(src + "[") else a

        with self._transaction() as conn:
            if not conn.execute(f"SELECT 1 FROM resources WHERE {match} LIMIT 1",
                                params(src)).fetchone():
                raise StateError(f"cannot move {src}: it is not in state")
            clash = conn.execute(f"SELECT address FROM resources WHERE {match} LIMIT 1",
                                 params(dst)).fetchone()
            if clash:
                raise StateError(f"cannot move {src} to {dst}: {clash[0]} already exists in state")
            moved = sorted({rename(a) for (a,) in conn.execute(
                f"SELECT address FROM resources WHERE {match}", params(src)).fetchall()})
            conn.execute(
                f"UPDATE resources SET address = ? || substr(address, ?), updated_at = ? "
                f"WHERE {match}",
                [dst, len(src) + 1, utc_now(), *params(src)],
            )
            # the JSON text narrows the rows to decode; rename() decides
            needle = json.dumps(src)[:-1]
            for address, deposed, deps_json in conn.execute(
                    "SELECT address, deposed, dependencies FROM resources").fetchall():
                if needle not in deps_json:
                    continue
                deps = json.loads(deps_json)
                new = [rename(d) for d in deps]
                if new != deps:
                    conn.execute(
                        "UPDATE resources SET dependencies = ? WHERE address = ? AND deposed = ?",
                        [dumps(new), address, deposed],
                    )
            self._changed()
            return moved

    def taint(self, address: str) -> None:
        """Mark the current object of `address` for replacement on the next apply."""
        with self._transaction() as conn:
            existing = self._must_get(conn, address, "")
            self._upsert(conn, existing, {"status": "tainted", "updated_at": utc_now()})

    def untaint(self, address: str) -> None:
        """Undo `taint`: the object is "ready" again."""
        with self._transaction() as conn:
            record = self._must_get(conn, address, "")
            if record.status != "tainted":
                raise StateError(f"{address} is not tainted (status {record.status})")
            self._upsert(conn, record, {"status": "ready", "updated_at": utc_now()})

    # -- outputs ---------------------------------------------------------

    @staticmethod
    def _outputs(conn: Connection) -> tuple[dict[str, Any], frozenset[str]]:
        values: dict[str, Any] = {}
        sensitive = set()
        for name, value, is_sensitive in conn.execute(
            "SELECT name, value, sensitive FROM outputs ORDER BY name"
        ).fetchall():
            values[name] = json.loads(value)
            if is_sensitive:
                sensitive.add(name)
        return values, frozenset(sensitive)

    def set_outputs(self, values: dict[str, Any], sensitive: Iterable[str] = ()) -> None:
        """Replace all outputs. The serial moves only if something differs."""
        sensitive = set(sensitive)
        with self._transaction() as conn:
            book = self._secrets(conn)
            # a sensitive output is never kept in clear, whatever it holds
            values = {k: book.seal_all(v) if k in sensitive else book.seal(v) for k, v in values.items()}
            old_values, old_sensitive = self._outputs(conn)
            new_sensitive = frozenset(sensitive & set(values))
            if dumps(old_values) == dumps(values) and old_sensitive == new_sensitive:
                return
            conn.execute("DELETE FROM outputs")
            if values:
                conn.executemany("INSERT INTO outputs (name, value, sensitive) VALUES (?, ?, ?)",
                                 [[k, dumps(v), int(k in sensitive)] for k, v in values.items()])
            self._changed()

    def outputs(self) -> dict[str, Any]:
        """Output values by name; sensitive ones are sealed references (see `sensitive_outputs`)."""
        with self._read() as conn:
            return {} if conn is None else self._secrets(conn).unseal(self._outputs(conn)[0])

    def sensitive_outputs(self) -> frozenset[str]:
        """Names of outputs marked sensitive."""
        with self._read() as conn:
            return frozenset() if conn is None else self._outputs(conn)[1]

    # -- history ---------------------------------------------------------

    def add_history(self, *, operation: str, plan_hash: str | None, summary: dict,
                    who: str | None = None, started_at: str | None, finished_at: str | None,
                    status: str, config_digest: str | None,
                    desired_config: dict | None = None) -> int:
        """Record one run; returns its id. `desired_config` is kept for rollback."""
        with self._transaction(bump_serial=False) as conn:
            return self._insert(conn, "history", {
                "operation": operation, "plan_hash": plan_hash, "summary": dumps(summary),
                "who": who or default_who(), "started_at": started_at,
                "finished_at": finished_at, "status": status, "config_digest": config_digest,
                "desired_config": None if desired_config is None else dumps(desired_config),
            })

    def finish_history(self, history_id: int, *, status: str, summary: dict, finished_at: str,
                       desired_config: dict | None = None) -> None:
        """Close the row `add_history` opened with status "running" when the run began."""
        with self._transaction(bump_serial=False) as conn:
            conn.execute("UPDATE history SET status = ?, summary = ?, finished_at = ?, "
                         "desired_config = coalesce(?, desired_config) WHERE id = ?",
                         [status, dumps(summary), finished_at,
                          None if desired_config is None else dumps(desired_config), history_id])

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        """Runs, newest first."""
        with self._read() as conn:
            if conn is None:
                return []
            sql, params = _limit(limit)
            rows = conn.execute(f"SELECT {HISTORY_COLUMNS} FROM history ORDER BY id DESC{sql}", params).fetchall()
            return [history_from_row(r) for r in rows]

    def get_history(self, history_id: int) -> HistoryEntry | None:
        """One run by id."""
        row = self._read_one(f"SELECT {HISTORY_COLUMNS} FROM history WHERE id = ?", [history_id])
        return history_from_row(row) if row else None

    # -- audit -----------------------------------------------------------

    @classmethod
    def _audit_row(cls, conn: Connection, event: str, *, address: str | None, details: dict | None,
                   who: str | None) -> int:
        from infraplan.state.audit_chain import entry_hash

        cls._serialize_audit(conn)
        last = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        prev = last[0] if last else None
        row = {"at": utc_now(), "event": event, "address": address,
               "details": None if details is None else dumps(details), "who": who or default_who()}
        row["prev_hash"] = prev
        row["hash"] = entry_hash(prev, row["at"], event, address, row["details"], row["who"])
        return cls._insert(conn, "audit", row)

    @classmethod
    def _serialize_audit(cls, conn: Connection) -> None:
        """Make this transaction the only one appending to the audit log until it ends (the chain
        must not fork). A SQLite write transaction already is."""

    def audit_rows(self) -> list[tuple]:
        """Every audit row as stored, oldest first: (id, at, event, address, details, who, prev_hash, hash)."""
        with self._read() as conn:
            if conn is None:
                return []
            cols = "id, at, event, address, details, who"
            if "hash" in self._columns(conn, "audit"):
                return [tuple(r) for r in conn.execute(
                    f"SELECT {cols}, prev_hash, hash FROM audit ORDER BY id").fetchall()]
            # a state from before the chain, read without upgrading it: no row has a hash
            return [(*r, None, None) for r in conn.execute(f"SELECT {cols} FROM audit ORDER BY id").fetchall()]

    def audit(self, event: str, *, address: str | None = None, details: dict | None = None,
              who: str | None = None) -> int:
        """Append an event to the audit log (which cannot be updated or deleted)."""
        with self._transaction(bump_serial=False) as conn:
            return self._audit_row(conn, event, address=address, details=details, who=who)

    def audit_log(self, limit: int | None = None) -> list[AuditEntry]:
        """Audit events, newest first."""
        with self._read() as conn:
            if conn is None:
                return []
            sql, params = _limit(limit)
            rows = conn.execute(
                f"SELECT id, at, event, address, details, who FROM audit ORDER BY id DESC{sql}", params).fetchall()
            return [AuditEntry(i, at, ev, addr, loads(det), who) for i, at, ev, addr, det, who in rows]

    # -- lock ------------------------------------------------------------

    def lock(self, operation: str, *, who: str | None = None,
             on_broken: Callable[[LockInfo], None] | None = None
             ) -> contextlib.AbstractContextManager[LockInfo]:
        """Hold the state lock for a block; raises LockError at once if it is held.

        A stale lock (its holder gone) is broken first; `on_broken(info)` is told.
        """
        return _lock.hold(self, operation, who=who, on_broken=on_broken)

    def break_stale_lock(self, *, who: str | None = None) -> LockInfo | None:
        """Break the lock if its holder is gone (audited); the broken lock, else None."""
        return _lock.break_stale(self, who=who)

    def current_lock(self) -> LockInfo | None:
        """The lock currently held, if any (works read-only too)."""
        return _lock.current(self)

    def force_unlock(self, lock_id: str, *, who: str | None = None) -> LockInfo:
        """Break the lock with id `lock_id` (LockError if it is not the current one); audited."""
        return _lock.force_unlock(self, lock_id, who=who)

    # -- backup ------------------------------------------------------------

    def write_backup(self) -> Path | None:
        """A copy of the whole state kept beside it, where the backend keeps one (SQLite);
        None elsewhere (a database server has its own backups)."""
        return None

    # -- drift runs, request activity and alerts (not resource state: no serial bump) --

    def add_drift_run(self, *, started_at: str, finished_at: str, duration_s: float, exit_code: int,
                      counts: dict, findings: list, checked: int, who: str | None = None) -> int:
        """Record one `infraplan drift` run; returns its id."""
        with self._transaction(bump_serial=False) as conn:
            return self._insert(conn, "drift_runs", {
                "started_at": started_at, "finished_at": finished_at, "duration_s": duration_s,
                "exit_code": exit_code, "counts": dumps(counts), "findings": dumps(findings),
                "checked": checked, "who": who or default_who(),
            })

    def drift_runs(self, limit: int | None = None) -> list[DriftRun]:
        """Drift runs, newest first."""
        with self._read() as conn:
            if conn is None or not self._has_table(conn, "drift_runs"):
                return []
            sql, params = _limit(limit)
            rows = conn.execute(
                "SELECT id, started_at, finished_at, duration_s, exit_code, counts, findings, checked, who "
                f"FROM drift_runs ORDER BY id DESC{sql}", params).fetchall()
            return [DriftRun(i, s, f, d, e, json.loads(c), json.loads(fi), n, w)
                    for i, s, f, d, e, c, fi, n, w in rows]

    def drift_activity(self) -> dict[str, dict]:
        """Last seen request counter per replica address (for idle detection)."""
        with self._read() as conn:
            if conn is None or not self._has_table(conn, "drift_activity"):
                return {}
            rows = conn.execute(
                "SELECT address, instance_id, requests, changed_at, seen_at FROM drift_activity").fetchall()
            return {a: {"instance_id": i, "requests": r, "changed_at": c, "seen_at": s} for a, i, r, c, s in rows}

    def set_drift_activity(self, rows: dict[str, dict], *, prune: bool = True) -> None:
        """Upsert activity rows by address; with `prune`, forget addresses not given."""
        with self._transaction(bump_serial=False) as conn:
            if prune:
                keep = list(rows)
                if keep:
                    conn.execute(f"DELETE FROM drift_activity WHERE address NOT IN ({','.join('?' * len(keep))})",
                                 keep)
                else:
                    conn.execute("DELETE FROM drift_activity")
            self._upsert_rows(conn, "drift_activity", [
                {"address": a, **{k: r.get(k) for k in ("instance_id", "requests", "changed_at", "seen_at")}}
                for a, r in rows.items()], pk=("address",))

    _ALERT_COLUMNS = ("fingerprint", "kind", "address", "summary", "first_seen", "last_seen", "notified_at",
                      "cleared_at", "clear_notified_at")

    def alert_rows(self, topic: str) -> list[dict]:
        """Alert de-duplication rows of `topic` (one per finding fingerprint ever seen)."""
        cols = self._ALERT_COLUMNS
        with self._read() as conn:
            if conn is None or not self._has_table(conn, "alerts"):
                return []
            rows = conn.execute(f"SELECT {', '.join(cols)} FROM alerts WHERE topic = ? "
                                "ORDER BY first_seen, fingerprint", [topic]).fetchall()
            return [dict(zip(cols, r)) for r in rows]

    def save_alert_rows(self, topic: str, rows: list[dict]) -> None:
        """Upsert alert rows of `topic` by fingerprint."""
        if not rows:
            return
        with self._transaction(bump_serial=False) as conn:
            self._upsert_rows(conn, "alerts", [{"topic": topic, **{k: r.get(k) for k in self._ALERT_COLUMNS}}
                                               for r in rows],
                              pk=("topic", "fingerprint"))

    # -- rollbacks (never bump the serial) ----------------------------------------------

    def record_rollback(self, fleet: str, fingerprint: str, reason: str,
                        evidence: dict | None = None) -> int:
        """Record that a rollout of `fleet` to the replicas fingerprinted `fingerprint` was rolled back."""
        with self._transaction(bump_serial=False) as conn:
            return self._insert(conn, "rollbacks", {
                "fleet": fleet, "fingerprint": fingerprint, "reason": reason,
                "evidence": dumps(evidence or {}), "at": utc_now(),
            })

    def rollbacks(self, fleet: str | None = None) -> list[dict]:
        """Rolled-back rollouts (newest first), of one fleet or all."""
        with self._read() as conn:
            if conn is None or not self._has_table(conn, "rollbacks"):
                return []
            where, params = ("WHERE fleet = ?", [fleet]) if fleet else ("", [])
            rows = conn.execute(f"SELECT id, fleet, fingerprint, reason, evidence, at FROM rollbacks {where} "
                                "ORDER BY id DESC", params).fetchall()
            return [{"id": i, "fleet": f, "fingerprint": fp, "reason": r, "evidence": loads(e), "at": at}
                    for i, f, fp, r, e, at in rows]

    def rolled_back(self, fleet: str, fingerprint: str) -> dict | None:
        """The latest rollback of `fleet` to `fingerprint`, if that rollout was ever rolled back."""
        return next((r for r in self.rollbacks(fleet) if r["fingerprint"] == fingerprint), None)

    def clear_rollbacks(self, fleet: str, fingerprint: str | None = None) -> int:
        """Forget rollbacks of `fleet` (one fingerprint or all) so the rollout may be retried."""
        with self._transaction(bump_serial=False) as conn:
            if fingerprint is None:
                return conn.execute("DELETE FROM rollbacks WHERE fleet = ?", [fleet]).rowcount
            return conn.execute("DELETE FROM rollbacks WHERE fleet = ? AND fingerprint = ?",
                                [fleet, fingerprint]).rowcount

"""The state store: one SQLite file (WAL mode) per project.

Every write method is its own transaction (BEGIN IMMEDIATE ... COMMIT) so the
engine can record an intent before each provider call and the result right
after it, and a crash in between loses nothing that was recorded. Writes that
change resources or outputs bump the serial once per transaction; `batch()`
groups several writes into one transaction (and one bump).

A store object may be shared between threads: a re-entrant mutex serialises
its use of the one connection (a `batch()` holds it until the batch ends).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infraplan.errors import StateError
from infraplan.state import integrity
from infraplan.state import lock as _lock
from infraplan.state.lock import LockInfo, default_who, utc_now
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind
from infraplan.util.secrets import SecretBook

if TYPE_CHECKING:  # sqlite-utils is imported when a file is opened (see _open)
    from sqlite_utils import Database

RESOURCE_PK = ("address", "deposed")
STATUSES = integrity.RESOURCE_STATUSES
ACTION_STATUS = {"create": "creating", "update": "updating", "delete": "deleting"}
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a write waits for another writer's transaction
# what decoding a damaged row raises (bad JSON or UTF-8, an unknown kind, a missing meta row)
_DECODE_ERRORS = (sqlite3.DatabaseError, ValueError, TypeError, KeyError)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass
class ResourceRecord:
    """One object in state. `deposed` is "" for the current object of an address."""

    address: str
    deposed: str
    kind: ResourceKind
    provider: str | None
    status: str
    attributes: dict
    pending: dict | None
    dependencies: list[str]
    error: str | None
    created_at: str
    updated_at: str

    @property
    def is_deposed(self) -> bool:
        return self.deposed != ""


_RESOURCE_COLUMNS = (
    "address, deposed, kind, provider, status, attributes, pending, dependencies, "
    "error, created_at, updated_at"
)


def _record(row: tuple) -> ResourceRecord:
    a, d, kind, provider, status, attrs, pending, deps, error, created, updated = row
    return ResourceRecord(
        a, d, ResourceKind(kind), provider, status, json.loads(attrs), _loads(pending),
        json.loads(deps), error, created, updated,
    )


def _row(record: ResourceRecord) -> dict:
    """The stored form of `record`."""
    return {
        "address": record.address, "deposed": record.deposed, "kind": record.kind,
        "provider": record.provider, "status": record.status,
        "attributes": _dumps(record.attributes),
        "pending": None if record.pending is None else _dumps(record.pending),
        "dependencies": _dumps(record.dependencies), "error": record.error,
        "created_at": record.created_at, "updated_at": record.updated_at,
    }


_ROW_KEYS = ("address", "deposed", "kind", "provider", "status", "attributes", "pending",
             "dependencies", "error", "created_at", "updated_at")
_UPSERT_SQL = (
    f"INSERT INTO resources ({', '.join(_ROW_KEYS)}) VALUES ({', '.join('?' * len(_ROW_KEYS))}) "
    "ON CONFLICT(address, deposed) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ROW_KEYS[2:])
)


@dataclass
class StateSnapshot:
    """A consistent view of the whole state at one serial."""

    lineage: str | None
    serial: int
    resources: list[ResourceRecord] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    sensitive_outputs: frozenset[str] = frozenset()

    @classmethod
    def empty(cls) -> StateSnapshot:
        return cls(lineage=None, serial=0)

    def get(self, address: str, deposed: str = "") -> ResourceRecord | None:
        for r in self.resources:
            if r.address == address and r.deposed == deposed:
                return r
        return None

    def current(self) -> dict[str, ResourceRecord]:
        """Current (non-deposed) objects by address."""
        return {r.address: r for r in self.resources if not r.deposed}

    def deposed(self) -> list[ResourceRecord]:
        return [r for r in self.resources if r.deposed]


@dataclass
class HistoryEntry:
    """One plan/apply/destroy run, as recorded by `add_history`."""

    id: int
    operation: str
    plan_hash: str | None
    summary: dict
    who: str | None
    started_at: str | None
    finished_at: str | None
    status: str
    config_digest: str | None
    desired_config: dict | None


@dataclass
class AuditEntry:
    """One append-only audit event."""

    id: int
    at: str
    event: str
    address: str | None
    details: dict | None
    who: str | None


_HISTORY_COLUMNS = (
    "id, operation, plan_hash, summary, who, started_at, finished_at, status, "
    "config_digest, desired_config"
)


def _create_private(path: Path) -> None:
    """Create the state file readable by its owner only (SQLite gives `-wal`/`-shm` the same
    mode), and tighten a file an older infraplan left world-readable."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists() and side.stat().st_mode & 0o077:
                os.chmod(side, 0o600)
    except PermissionError:
        pass  # not ours to change: SQLite reports what it cannot open


class StateStore:
    """Read and write one infraplan state file.

    `StateStore(path)` opens (creating if needed) and migrates the file;
    `StateStore.open_readonly(path)` never creates or changes anything.
    """

    def __init__(self, path: Path | str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
                 readonly: bool = False, secrets: Iterable[str] = ()):
        self.path = Path(path)
        self.readonly = readonly
        #: secrets are sealed on every write and the known ones restored on every read (util.secrets)
        self._book = SecretBook(secrets)
        self._mutex = threading.RLock()
        self._depth = 0  # nesting of _transaction
        self._dirty = False  # resources/outputs changed in the open transaction
        self._has_schema = False
        self._closed = False
        self.db: Database | None = None
        self._open(busy_timeout)

    @classmethod
    def open_readonly(cls, path: Path | str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
                      secrets: Iterable[str] = ()) -> StateStore:
        """Open for reading only: no file is created, no migration or lock taken.

        A missing file reads as an empty state.
        """
        return cls(path, busy_timeout=busy_timeout, readonly=True, secrets=secrets)

    # -- opening ---------------------------------------------------------

    def _open(self, busy_timeout: float) -> None:
        if self.readonly and not self.path.exists():
            return
        from infraplan.state import migrations as _migrations  # imports sqlite-utils without pandas
        from sqlite_utils import Database

        if self.path.is_dir():
            raise StateError(f"state path {self.path} is a directory")
        conn: sqlite3.Connection | None = None
        try:
            if self.readonly:
                uri = self.path.resolve().as_uri() + "?mode=ro"
                conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout,
                                       check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                _create_private(self.path)
                conn = sqlite3.connect(str(self.path), timeout=busy_timeout,
                                       check_same_thread=False)
            db = Database(conn, execute_plugins=False)
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Fails with "file is not a database" on a corrupt or foreign file.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            self.db = db
            applied = _migrations.check_not_newer(db, self.path)
            if applied:
                # before anything is written (even the lock): a damaged state is refused by every command
                damage = integrity.scan(conn, applied)
                if damage:
                    raise integrity.damaged_error(self.path, damage)
            if self.readonly:
                # an older schema is readable as it is (tables added later read as empty);
                # the next command that writes state upgrades it
                self._has_schema = bool(applied)
                return
            db.enable_wal()
            if _migrations.pending_names(db):
                # Under a write lock, so two first openers do not race; apply()
                # re-reads what is pending inside it.
                with self._transaction(bump_serial=False):
                    _migrations.apply(db)
            self._has_schema = True
        except sqlite3.DatabaseError as e:
            if conn is not None:
                conn.close()
            self.db = None
            if getattr(e, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise integrity.damaged_error(self.path, [integrity.Damage(
                    None, None, None, f"the file cannot be read as an SQLite database ({e})")]) from None
            raise StateError(f"state file {self.path} is not a usable infraplan state "
                             f"database: {e}") from None
        except BaseException:
            if conn is not None:
                conn.close()
            self.db = None
            raise

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._mutex:
            self._closed = True
            if self.db is not None:
                self.db.close()
                self.db = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"<StateStore {self.path} {mode}>"

    # -- transactions ----------------------------------------------------

    def _require_db(self) -> Database:
        if self._closed:
            raise StateError(f"state {self.path} is closed")
        if self.db is None:
            raise StateError(f"state {self.path} is opened read-only")
        return self.db

    @contextlib.contextmanager
    def _transaction(self, *, bump_serial: bool = True, single: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested calls become savepoints of the outer one.

        The serial is bumped once, at the outermost commit, if any write inside
        called `_changed()` and `bump_serial` is set on the outermost call.
        """
        if self.readonly and not self._closed:
            raise StateError(f"state {self.path} is opened read-only")
        with self._mutex:
            conn = self._require_db().conn
            if self._depth:
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
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise StateError(f"cannot write state {self.path}: {e}") from None
            self._depth = 1
            self._dirty = False
            try:
                yield conn
                if bump_serial and self._dirty:
                    conn.execute(
                        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'serial'"
                    )
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, _DECODE_ERRORS):
                    self._raise_if_damaged()
                if isinstance(e, sqlite3.Error):
                    raise StateError(f"cannot write state {self.path}: {e}") from e
                raise
            finally:
                self._depth = 0
                self._dirty = False

    def _changed(self) -> None:
        self._dirty = True

    @contextlib.contextmanager
    def batch(self) -> Iterator[StateStore]:
        """Group writes into one transaction and at most one serial bump.

        Each write is applied when called; all are committed when the block
        exits, or all rolled back if it raises. Other threads wait meanwhile.
        """
        with self._transaction():
            yield self

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A read transaction (or the open write transaction); None if no schema."""
        with self._mutex:
            if self._closed:
                raise StateError(f"state {self.path} is closed")
            if self.db is None or not self._has_schema:
                yield None
                return
            conn = self.db.conn
            if conn.in_transaction:
                yield conn
                return
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except _DECODE_ERRORS as e:
                self._raise_if_damaged()
                if isinstance(e, sqlite3.DatabaseError):
                    raise StateError(f"cannot read state {self.path}: {e}") from e
                raise

    def _raise_if_damaged(self) -> None:
        """Raise StateDamaged if the state is damaged (a read or write just failed to decode a row)."""
        from infraplan.state import migrations as _migrations

        db = self.db
        if db is None:
            return
        try:
            damage = integrity.scan(db.conn, _migrations.applied_names(db))
        except sqlite3.DatabaseError:
            return
        if damage:
            raise integrity.damaged_error(self.path, damage) from None

    def _read_one(self, sql: str, params: Iterable = ()) -> tuple | None:
        with self._read() as conn:
            return None if conn is None else conn.execute(sql, list(params)).fetchone()

    # -- meta ------------------------------------------------------------

    @staticmethod
    def _meta(conn: sqlite3.Connection) -> tuple[str, int]:
        rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('lineage', 'serial')"))
        return rows["lineage"], int(rows["serial"])

    def _secrets(self, conn: sqlite3.Connection) -> SecretBook:
        """The book sealing for this state (its lineage is the HMAC key)."""
        lineage = self._meta(conn)[0]
        if self._book.salt != lineage:
            self._book = self._book.with_salt(lineage)
        return self._book

    def _open_record(self, conn: sqlite3.Connection, record: ResourceRecord) -> ResourceRecord:
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
    def _get(conn: sqlite3.Connection, address: str, deposed: str) -> ResourceRecord | None:
        row = conn.execute(
            f"SELECT {_RESOURCE_COLUMNS} FROM resources WHERE address = ? AND deposed = ?",
            [address, deposed],
        ).fetchone()
        return _record(row) if row else None

    @staticmethod
    def _all(conn: sqlite3.Connection, include_deposed: bool) -> list[ResourceRecord]:
        where = "" if include_deposed else " WHERE deposed = ''"
        rows = conn.execute(
            f"SELECT {_RESOURCE_COLUMNS} FROM resources{where} ORDER BY address, deposed"
        ).fetchall()
        return [_record(r) for r in rows]

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

    def _must_get(self, conn: sqlite3.Connection, address: str, deposed: str) -> ResourceRecord:
        record = self._get(conn, address, deposed)
        if record is None:
            what = f"{address} (deposed {deposed})" if deposed else address
            raise StateError(f"{what} is not in state")
        return record

    def _upsert(self, existing: ResourceRecord | None, changes: dict) -> None:
        """Upsert a full row: `existing` (as stored) overlaid with `changes`.

        Full rows because SQLite checks NOT NULL on the INSERT half of an upsert.
        """
        row = _row(existing) if existing is not None else {}
        row.update(changes)
        # one prepared statement: sqlite-utils' upsert introspects the table on every call,
        # which dominated large applies
        self._require_db().conn.execute(_UPSERT_SQL, [row.get(c) for c in _ROW_KEYS])
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
                "address": address, "deposed": deposed, "kind": kind, "provider": provider,
                "status": ACTION_STATUS[action], "pending": _dumps(pending), "updated_at": now,
            }
            if existing is None:
                if action != Action.CREATE:
                    raise StateError(f"cannot record a {action} of {address}: it is not in state")
                row["created_at"] = now
                row["error"] = None
            if action == Action.CREATE:
                row["attributes"] = _dumps(attributes)
                row["dependencies"] = _dumps(deps)
            self._upsert(existing, row)

    def record_result(self, address: str, *, attributes: dict, status: str = "ready",
                      deposed: str = "", dependencies: Iterable[str] | None = None) -> None:
        """Record a provider call's outcome: attributes and status; clears pending and error.

        Dependencies default to those of the pending intent, else stay as they were.
        """
        if status not in STATUSES:
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
                [status, _dumps(self._secrets(conn).seal(attributes)), _dumps(deps), utc_now(), address, deposed],
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
            row = {"address": address, "deposed": "", "kind": kind, "provider": provider,
                   "status": "ready", "attributes": _dumps(self._secrets(conn).seal(attributes)),
                   "dependencies": _dumps(list(dependencies)), "pending": None, "error": None,
                   "updated_at": now}
            if existing is None:
                row["created_at"] = now
            self._upsert(existing, row)

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
            self._upsert(existing, {"status": "failed", "error": str(error),
                                    "updated_at": utc_now()})

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
                f"SELECT address FROM resources WHERE {match}", params(src))})
            conn.execute(
                f"UPDATE resources SET address = ? || substr(address, ?), updated_at = ? "
                f"WHERE {match}",
                [dst, len(src) + 1, utc_now(), *params(src)],
            )
            # instr() on the JSON text narrows the rows to decode; rename() decides.
            for address, deposed, deps_json in conn.execute(
                "SELECT address, deposed, dependencies FROM resources WHERE instr(dependencies, ?)",
                [json.dumps(src)[:-1]],
            ).fetchall():
                deps = json.loads(deps_json)
                new = [rename(d) for d in deps]
                if new != deps:
                    conn.execute(
                        "UPDATE resources SET dependencies = ? WHERE address = ? AND deposed = ?",
                        [_dumps(new), address, deposed],
                    )
            self._changed()
            return moved

    def taint(self, address: str) -> None:
        """Mark the current object of `address` for replacement on the next apply."""
        with self._transaction() as conn:
            existing = self._must_get(conn, address, "")
            self._upsert(existing, {"status": "tainted", "updated_at": utc_now()})

    def untaint(self, address: str) -> None:
        """Undo `taint`: the object is "ready" again."""
        with self._transaction() as conn:
            record = self._must_get(conn, address, "")
            if record.status != "tainted":
                raise StateError(f"{address} is not tainted (status {record.status})")
            self._upsert(record, {"status": "ready", "updated_at": utc_now()})

    # -- outputs ---------------------------------------------------------

    @staticmethod
    def _outputs(conn: sqlite3.Connection) -> tuple[dict[str, Any], frozenset[str]]:
        values: dict[str, Any] = {}
        sensitive = set()
        for name, value, is_sensitive in conn.execute(
            "SELECT name, value, sensitive FROM outputs ORDER BY name"
        ):
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
            if _dumps(old_values) == _dumps(values) and old_sensitive == new_sensitive:
                return
            conn.execute("DELETE FROM outputs")
            self._require_db().table("outputs").insert_all(
                {"name": k, "value": _dumps(v), "sensitive": int(k in sensitive)}
                for k, v in values.items()
            )
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
        with self._transaction(bump_serial=False):
            table = self._require_db().table("history").insert({
                "operation": operation, "plan_hash": plan_hash, "summary": _dumps(summary),
                "who": who or default_who(), "started_at": started_at,
                "finished_at": finished_at, "status": status, "config_digest": config_digest,
                "desired_config": None if desired_config is None else _dumps(desired_config),
            })
            return int(table.last_pk)

    def finish_history(self, history_id: int, *, status: str, summary: dict, finished_at: str,
                       desired_config: dict | None = None) -> None:
        """Close the row `add_history` opened with status "running" when the run began."""
        with self._transaction(bump_serial=False) as conn:
            conn.execute("UPDATE history SET status = ?, summary = ?, finished_at = ?, "
                         "desired_config = coalesce(?, desired_config) WHERE id = ?",
                         [status, _dumps(summary), finished_at,
                          None if desired_config is None else _dumps(desired_config), history_id])

    @staticmethod
    def _history_entry(row: tuple) -> HistoryEntry:
        (id_, operation, plan_hash, summary, who, started, finished, status, digest,
         desired) = row
        return HistoryEntry(id_, operation, plan_hash, json.loads(summary), who, started,
                            finished, status, digest, _loads(desired))

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        """Runs, newest first."""
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(f"SELECT {_HISTORY_COLUMNS} FROM history ORDER BY id DESC "
                                "LIMIT ?", [-1 if limit is None else limit]).fetchall()
            return [self._history_entry(r) for r in rows]

    def get_history(self, history_id: int) -> HistoryEntry | None:
        """One run by id."""
        row = self._read_one(f"SELECT {_HISTORY_COLUMNS} FROM history WHERE id = ?",
                             [history_id])
        return self._history_entry(row) if row else None

    # -- audit -----------------------------------------------------------

    def audit(self, event: str, *, address: str | None = None, details: dict | None = None,
              who: str | None = None) -> int:
        """Append an event to the audit log (which cannot be updated or deleted)."""
        with self._transaction(bump_serial=False):
            table = self._require_db().table("audit").insert({
                "at": utc_now(), "event": event, "address": address,
                "details": None if details is None else _dumps(details),
                "who": who or default_who(),
            })
            return int(table.last_pk)

    def audit_log(self, limit: int | None = None) -> list[AuditEntry]:
        """Audit events, newest first."""
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                "SELECT id, at, event, address, details, who FROM audit ORDER BY id DESC LIMIT ?",
                [-1 if limit is None else limit],
            ).fetchall()
            return [AuditEntry(i, at, ev, addr, _loads(det), who)
                    for i, at, ev, addr, det, who in rows]

    # -- lock ------------------------------------------------------------

    def lock(self, operation: str, *, who: str | None = None, on_broken=None
             ) -> contextlib.AbstractContextManager[LockInfo]:
        """Hold the state lock for a block; raises LockError at once if it is held.

        A stale lock (its holder gone from this host) is broken first; `on_broken(info)` is told.
        """
        return _lock.hold(self, operation, who=who, on_broken=on_broken)

    def break_stale_lock(self, *, who: str | None = None) -> LockInfo | None:
        """Break the lock if its holder is gone from this host (audited); the broken lock, else None."""
        return _lock.break_stale(self, who=who)

    def current_lock(self) -> LockInfo | None:
        """The lock currently held, if any (works read-only too)."""
        return _lock.current(self)

    def force_unlock(self, lock_id: str, *, who: str | None = None) -> LockInfo:
        """Break the lock with id `lock_id` (LockError if it is not the current one); audited."""
        return _lock.force_unlock(self, lock_id, who=who)

    # -- backup ------------------------------------------------------------

    def write_backup(self) -> Path:
        """Copy the whole state (checked whole when it was opened) to `infraplan.db.backup`."""
        from infraplan.state.backup import write_backup

        with self._mutex:
            if self._depth:
                raise StateError("a backup is taken between transactions, not inside one")
            try:
                return write_backup(self._require_db().conn, self.path)
            except (OSError, sqlite3.Error) as e:
                raise StateError(f"cannot write the backup of state {self.path}: {e}") from None

    # -- drift runs, request activity and alerts (not resource state: no serial bump) --

    def add_drift_run(self, *, started_at: str, finished_at: str, duration_s: float, exit_code: int,
                      counts: dict, findings: list, checked: int, who: str | None = None) -> int:
        """Record one `infraplan drift` run; returns its id."""
        with self._transaction(bump_serial=False):
            table = self._require_db().table("drift_runs").insert({
                "started_at": started_at, "finished_at": finished_at, "duration_s": duration_s,
                "exit_code": exit_code, "counts": _dumps(counts), "findings": _dumps(findings),
                "checked": checked, "who": who or default_who(),
            })
            return int(table.last_pk)

    def drift_runs(self, limit: int | None = None) -> list[DriftRun]:
        """Drift runs, newest first."""
        with self._read() as conn:
            if conn is None or not _has_table(conn, "drift_runs"):
                return []
            rows = conn.execute(
                "SELECT id, started_at, finished_at, duration_s, exit_code, counts, findings, checked, who "
                "FROM drift_runs ORDER BY id DESC LIMIT ?", [-1 if limit is None else limit]).fetchall()
            return [DriftRun(i, s, f, d, e, json.loads(c), json.loads(fi), n, w)
                    for i, s, f, d, e, c, fi, n, w in rows]

    def drift_activity(self) -> dict[str, dict]:
        """Last seen request counter per replica address (for idle detection)."""
        with self._read() as conn:
            if conn is None or not _has_table(conn, "drift_activity"):
                return {}
            rows = conn.execute(
                "SELECT address, instance_id, requests, changed_at, seen_at FROM drift_activity").fetchall()
            return {a: {"instance_id": i, "requests": r, "changed_at": c, "seen_at": s} for a, i, r, c, s in rows}

    def set_drift_activity(self, rows: dict[str, dict], *, prune: bool = True) -> None:
        """Upsert activity rows by address; with `prune`, forget addresses not given."""
        with self._transaction(bump_serial=False) as conn:
            if prune:
                keep = list(rows)
                conn.execute(f"DELETE FROM drift_activity WHERE address NOT IN ({','.join('?' * len(keep))})", keep)
            if rows:
                self._require_db().table("drift_activity").upsert_all(
                    [{"address": a, **{k: r.get(k) for k in ("instance_id", "requests", "changed_at", "seen_at")}}
                     for a, r in rows.items()], pk="address")

    def alert_rows(self, topic: str) -> list[dict]:
        """Alert de-duplication rows of `topic` (one per finding fingerprint ever seen)."""
        cols = ("fingerprint", "kind", "address", "summary", "first_seen", "last_seen", "notified_at",
                "cleared_at", "clear_notified_at")
        with self._read() as conn:
            if conn is None or not _has_table(conn, "alerts"):
                return []
            rows = conn.execute(f"SELECT {', '.join(cols)} FROM alerts WHERE topic = ? ORDER BY first_seen, fingerprint",
                                [topic]).fetchall()
            return [dict(zip(cols, r)) for r in rows]

    def save_alert_rows(self, topic: str, rows: list[dict]) -> None:
        """Upsert alert rows of `topic` by fingerprint."""
        if not rows:
            return
        with self._transaction(bump_serial=False):
            self._require_db().table("alerts").upsert_all([{**r, "topic": topic} for r in rows],
                                                          pk=("topic", "fingerprint"))

    # -- rollbacks (never bump the serial) ----------------------------------------------
    def record_rollback(self, fleet: str, fingerprint: str, reason: str,
                        evidence: dict | None = None) -> int:
        """Record that a rollout of `fleet` to the replicas fingerprinted `fingerprint` was rolled back."""
        with self._transaction(bump_serial=False):
            table = self._require_db().table("rollbacks").insert({
                "fleet": fleet, "fingerprint": fingerprint, "reason": reason,
                "evidence": _dumps(evidence or {}), "at": utc_now(),
            })
            return int(table.last_pk)

    def rollbacks(self, fleet: str | None = None) -> list[dict]:
        """Rolled-back rollouts (newest first), of one fleet or all."""
        with self._read() as conn:
            if conn is None or not _has_table(conn, "rollbacks"):
                return []
            where, params = ("WHERE fleet = ?", [fleet]) if fleet else ("", [])
            rows = conn.execute(f"SELECT id, fleet, fingerprint, reason, evidence, at FROM rollbacks {where} "
                                "ORDER BY id DESC", params).fetchall()
            return [{"id": i, "fleet": f, "fingerprint": fp, "reason": r, "evidence": _loads(e), "at": at}
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


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]).fetchone() is not None


@dataclass
class DriftRun:
    """One `infraplan drift` run, as recorded by `add_drift_run`."""

    id: int
    started_at: str
    finished_at: str | None
    duration_s: float | None
    exit_code: int
    counts: dict
    findings: list
    checked: int | None
    who: str | None


# -- rolled-back rollouts (infraplan.rollout); not resource state: no serial bump --

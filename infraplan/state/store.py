"""The SQLite state store: one file (WAL mode) per project, the zero-set-up default.

The store's logic is `infraplan.state.sql_store.SqlStore`; this module adds what only a
file has: creating it readable by its owner only, the integrity scan when it is opened
(a damaged file is refused before anything is written), and the `.backup` copy.

Writes take SQLite's write lock at BEGIN (BEGIN IMMEDIATE), so two writers never
interleave a read-then-write; a write waits `busy_timeout` seconds for another's.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from infraplan.errors import StateError
from infraplan.state import integrity
from infraplan.state.api import BackendKind, StateLocation
from infraplan.state.records import (  # noqa: F401  (re-exported: the record types' historical home)
    ACTION_STATUS,
    RESOURCE_STATUSES as STATUSES,
    AuditEntry,
    DriftRun,
    HistoryEntry,
    ResourceRecord,
    StateSnapshot,
)
from infraplan.state.sql_store import SqlStore

if TYPE_CHECKING:  # sqlite-utils is imported when a file is opened (see _open)
    from sqlite_utils import Database

RESOURCE_PK = ("address", "deposed")
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a write waits for another writer's transaction


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


class StateStore(SqlStore):
    """Read and write one infraplan state file.

    `StateStore(path)` opens (creating if needed) and migrates the file;
    `StateStore.open_readonly(path)` never creates or changes anything.
    """

    BEGIN_WRITE = "BEGIN IMMEDIATE"
    DB_ERROR = sqlite3.Error

    def __init__(self, path: Path | str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
                 readonly: bool = False, secrets: Iterable[str] = ()):
        self.path = Path(path)
        super().__init__(StateLocation(BackendKind.SQLITE, str(path)), readonly=readonly, secrets=secrets)
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
            if not applied:
                foreign = [r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                    "AND name != '_sqlite_migrations' ORDER BY name")]
                if foreign:  # another program's database: never extended with infraplan's tables
                    shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                    raise StateError(f"state file {self.path} is an SQLite database of another program (tables: "
                                     f"{shown}); infraplan keeps its state in a file of its own: give another "
                                     "path with --state")
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

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"<StateStore {self.path} {mode}>"

    # -- the backend's part of SqlStore ----------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.db is None:
            raise StateError(f"state {self.path} is opened read-only")
        return self.db.conn

    def _has_database(self) -> bool:
        return self.db is not None

    def _columns(self, conn: sqlite3.Connection, table: str) -> set[str]:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()}

    def _db_error(self, exc: Exception, doing: str) -> StateError:
        return StateError(f"cannot {doing} state {self.path}: {exc}")

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

    # -- backup ------------------------------------------------------------

    def write_backup(self) -> Path:
        """Copy the whole state (checked whole when it was opened) to `infraplan.db.backup`."""
        from infraplan.state.backup import write_backup

        with self._mutex:
            if self._depth:
                raise StateError("a backup is taken between transactions, not inside one")
            try:
                return write_backup(self._connect(), self.path)
            except (OSError, sqlite3.Error) as e:
                raise StateError(f"cannot write the backup of state {self.path}: {e}") from None

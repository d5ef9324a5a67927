"""The state schema's one migration history, and how it is applied on each backend.

Migrations are append-only: never edit or rename one that has shipped, add a new one at
the end instead. Each is written once in the portable steps of `infraplan.state.schema`
and rendered for SQLite or PostgreSQL. A state carrying a migration name this build does
not know was written by a newer infraplan and is refused.

On SQLite the applied names are recorded by sqlite-utils' migrations (the
`_sqlite_migrations` table, as in every state file so far); on PostgreSQL in the
`infraplan_migrations` table, with the same columns.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infraplan.errors import StateError
from infraplan.state.schema import (
    AddColumn,
    AppendOnly,
    CreateIndex,
    CreateTable,
    Dialect,
    Migration,
    Seed,
    SingleRow,
    integer,
    real,
    text,
)

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

MIGRATION_SET = "infraplan"
#: where PostgreSQL records the applied migrations (SQLite: sqlite-utils' `_sqlite_migrations`)
PG_MIGRATIONS_TABLE = "infraplan_migrations"

MIGRATIONS: tuple[Migration, ...] = (
    Migration("m001_initial", "Meta, resources, outputs, history, an append-only audit log and the lock row.", (
        CreateTable("meta", (text("key"), text("value", not_null=True)), pk=("key",)),
        Seed("meta", lambda: [{"key": "lineage", "value": uuid.uuid4().hex}, {"key": "serial", "value": "0"}]),
        CreateTable("resources", (
            text("address", not_null=True), text("deposed", not_null=True, default=""),
            text("kind", not_null=True), text("provider"), text("status", not_null=True),
            text("attributes", not_null=True, default="{}"), text("pending"),
            text("dependencies", not_null=True, default="[]"), text("error"),
            text("created_at", not_null=True), text("updated_at", not_null=True),
        ), pk=("address", "deposed")),
        CreateTable("outputs", (text("name"), text("value", not_null=True),
                                integer("sensitive", not_null=True, default=0)), pk=("name",)),
        CreateTable("history", (
            integer("id"), text("operation", not_null=True), text("plan_hash"), text("summary", not_null=True),
            text("who"), text("started_at"), text("finished_at"), text("status", not_null=True),
            text("config_digest"), text("desired_config"),
        ), pk=("id",)),
        CreateTable("audit", (integer("id"), text("at", not_null=True), text("event", not_null=True),
                              text("address"), text("details"), text("who")), pk=("id",)),
        AppendOnly("audit", "audit log"),
        CreateTable("locks", (integer("slot"), text("id", not_null=True), text("who"), integer("pid"),
                              text("host"), text("operation", not_null=True), text("since", not_null=True)),
                    pk=("slot",)),
        SingleRow("locks", "slot", 1),
    )),
    Migration("m002_drift_and_alerts", "Drift run history, per-replica request activity (idle detection) and "
              "alert de-duplication. None of these is resource state: writing them never bumps the serial.", (
        CreateTable("drift_runs", (
            integer("id"), text("started_at", not_null=True), text("finished_at"), real("duration_s"),
            integer("exit_code", not_null=True), text("counts", not_null=True), text("findings", not_null=True),
            integer("checked"), text("who"),
        ), pk=("id",)),
        CreateTable("drift_activity", (text("address"), text("instance_id"), real("requests"),
                                       real("changed_at", not_null=True), real("seen_at", not_null=True)),
                    pk=("address",)),
        CreateTable("alerts", (
            text("topic"), text("fingerprint"), text("kind"), text("address"), text("summary"),
            text("first_seen", not_null=True), text("last_seen", not_null=True), text("notified_at"),
            text("cleared_at"), text("clear_notified_at"),
        ), pk=("topic", "fingerprint")),
    )),
    Migration("m003_rollouts", "Rolled-back rollouts: the planner refuses to retry the same desired replicas "
              "of a fleet. Not resource state: writing it never bumps the serial.", (
        CreateTable("rollbacks", (integer("id"), text("fleet", not_null=True), text("fingerprint", not_null=True),
                                  text("reason", not_null=True), text("evidence"), text("at", not_null=True)),
                    pk=("id",)),
        CreateIndex("rollbacks", ("fleet", "fingerprint")),
    )),
    Migration("m004_lock_start_time", "The lock holder's process start time: a pid reused by another program "
              "is told apart.", (
        AddColumn("locks", real("pid_started")),
    )),
    Migration("m005_audit_chain", "The audit log's hash chain (state.audit_chain): each row's link to the row "
              "before it and its own hash.", (
        AddColumn("audit", text("prev_hash")),
        AddColumn("audit", text("hash")),
    )),
)


def known_names() -> list[str]:
    """Names of the migrations this build knows, in order."""
    return [m.name for m in MIGRATIONS]


def newer_error(applied: list[str], where: object, *, what: str = "state file") -> StateError | None:
    """The refusal of a state whose applied migrations include some this build does not know."""
    unknown = [name for name in applied if name not in set(known_names())]
    if not unknown:
        return None
    return StateError(f"{what} {where} was written by a newer infraplan "
                      f"(unknown schema migrations: {', '.join(unknown)}); upgrade infraplan to use it")


# -- SQLite (through sqlite-utils' migrations, as state files have always been) --

_sqlite_set: Migrations | None = None


def _sqlite_migrations() -> Migrations:
    global _sqlite_set
    if _sqlite_set is None:
        from infraplan.state import _import_sqlite_utils_without_dataframes

        _import_sqlite_utils_without_dataframes()
        from sqlite_utils.migrations import Migrations

        found = Migrations(MIGRATION_SET)
        for m in MIGRATIONS:
            found(name=m.name)(_sqlite_step(m))
        _sqlite_set = found
    return _sqlite_set


def _sqlite_step(migration: Migration) -> Callable[[Database], None]:
    def run(db: Database) -> None:
        def existing(table: str) -> set[str]:
            return {r[1] for r in db.conn.execute(f'PRAGMA table_info("{table}")').fetchall()}

        for sql, params in migration.render(Dialect.SQLITE, existing):
            db.conn.execute(sql, params)

    run.__doc__ = migration.doc
    return run


def applied_names(db: Database) -> list[str]:
    """Names of this set's migrations recorded in `db` (read-only)."""
    return [m.name for m in _sqlite_migrations().applied(db)]


def check_not_newer(db: Database, path: object) -> list[str]:
    """Raise StateError if `db` has migrations this build does not know.

    Returns the applied names.
    """
    applied = applied_names(db)
    error = newer_error(applied, path)
    if error:
        raise error
    return applied


def pending_names(db: Database) -> list[str]:
    """Names of migrations not yet applied to `db`."""
    return [m.name for m in _sqlite_migrations().pending(db)]


def apply(db: Database) -> None:
    """Apply pending migrations (idempotent). The caller owns the transaction."""
    _sqlite_migrations().apply(db)


# -- PostgreSQL (`conn` executes `?`-placeholder SQL; the caller owns the transaction) --

def pg_ensure_table(conn: Any) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {PG_MIGRATIONS_TABLE} ("
                 "id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, migration_set text NOT NULL, "
                 "name text NOT NULL, applied_at text NOT NULL, UNIQUE (migration_set, name))")


def pg_applied_names(conn: Any, has_table: bool) -> list[str]:
    """Names of the applied migrations, in order ([] when the bookkeeping table is absent)."""
    if not has_table:
        return []
    rows = conn.execute(f"SELECT name FROM {PG_MIGRATIONS_TABLE} WHERE migration_set = ? ORDER BY id",
                        [MIGRATION_SET]).fetchall()
    return [r[0] for r in rows]


def pg_apply(conn: Any, existing: Callable[[str], set[str]]) -> list[str]:
    """Apply the migrations not yet recorded; returns their names."""
    pg_ensure_table(conn)
    done = set(pg_applied_names(conn, True))
    applied = []
    for m in MIGRATIONS:
        if m.name in done:
            continue
        for sql, params in m.render(Dialect.POSTGRES, existing):
            conn.execute(sql, params)
        conn.execute(f"INSERT INTO {PG_MIGRATIONS_TABLE} (migration_set, name, applied_at) VALUES (?, ?, ?)",
                     [MIGRATION_SET, m.name, str(datetime.datetime.now(datetime.timezone.utc))])
        applied.append(m.name)
    return applied

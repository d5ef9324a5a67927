"""Schema of the state file, managed as sqlite-utils migrations.

Migrations are append-only: never edit or rename one that has shipped, add a
new function below instead. A state file carrying a migration name this build
does not know was written by a newer infraplan and is refused.
"""

from __future__ import annotations

import uuid

from infraplan.state import _import_sqlite_utils_without_dataframes

_import_sqlite_utils_without_dataframes()

from sqlite_utils import Database  # noqa: E402
from sqlite_utils.migrations import Migrations  # noqa: E402

from infraplan.errors import StateError

MIGRATION_SET = "infraplan"
migrations = Migrations(MIGRATION_SET)


@migrations()
def m001_initial(db: Database) -> None:
    """Meta, resources, outputs, history, an append-only audit log and the lock row."""
    db.table("meta").create({"key": str, "value": str}, pk="key", not_null={"value"})
    db.table("meta").insert_all(
        [{"key": "lineage", "value": uuid.uuid4().hex}, {"key": "serial", "value": "0"}]
    )

    db.table("resources").create(
        {
            "address": str,
            "deposed": str,
            "kind": str,
            "provider": str,
            "status": str,
            "attributes": str,
            "pending": str,
            "dependencies": str,
            "error": str,
            "created_at": str,
            "updated_at": str,
        },
        pk=("address", "deposed"),
        not_null={"address", "deposed", "kind", "status", "attributes", "dependencies",
                  "created_at", "updated_at"},
        defaults={"deposed": "", "attributes": "{}", "dependencies": "[]"},
    )

    db.table("outputs").create(
        {"name": str, "value": str, "sensitive": int},
        pk="name",
        not_null={"value", "sensitive"},
        defaults={"sensitive": 0},
    )

    db.table("history").create(
        {
            "id": int,
            "operation": str,
            "plan_hash": str,
            "summary": str,
            "who": str,
            "started_at": str,
            "finished_at": str,
            "status": str,
            "config_digest": str,
            "desired_config": str,
        },
        pk="id",
        not_null={"operation", "summary", "status"},
    )

    db.table("audit").create(
        {"id": int, "at": str, "event": str, "address": str, "details": str, "who": str},
        pk="id",
        not_null={"at", "event"},
    )
    # sqlite-utils has no helper for arbitrary triggers; these make the audit
    # log append-only for every client of the file, not just this code.
    db.execute(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END"
    )
    db.execute(
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END"
    )

    db.table("locks").create(
        {"slot": int, "id": str, "who": str, "pid": int, "host": str,
         "operation": str, "since": str},
        pk="slot",
        not_null={"id", "operation", "since"},
    )
    # slot is the primary key and must be 1, so the table holds at most one row.
    db.execute(
        "CREATE TRIGGER locks_single_row BEFORE INSERT ON locks WHEN NEW.slot != 1 "
        "BEGIN SELECT RAISE(ABORT, 'locks holds a single row with slot = 1'); END"
    )


@migrations()
def m002_drift_and_alerts(db: Database) -> None:
    """Drift run history, per-replica request activity (idle detection) and alert de-duplication.

    None of these is resource state: writing them never bumps the serial.
    """
    db.table("drift_runs").create(
        {"id": int, "started_at": str, "finished_at": str, "duration_s": float, "exit_code": int,
         "counts": str, "findings": str, "checked": int, "who": str},
        pk="id",
        not_null={"started_at", "exit_code", "counts", "findings"},
    )
    db.table("drift_activity").create(
        {"address": str, "instance_id": str, "requests": float, "changed_at": float, "seen_at": float},
        pk="address",
        not_null={"changed_at", "seen_at"},
    )
    db.table("alerts").create(
        {"topic": str, "fingerprint": str, "kind": str, "address": str, "summary": str,
         "first_seen": str, "last_seen": str, "notified_at": str, "cleared_at": str,
         "clear_notified_at": str},
        pk=("topic", "fingerprint"),
        not_null={"first_seen", "last_seen"},
    )



@migrations()
def m003_rollouts(db: Database) -> None:
    """Rolled-back rollouts: the planner refuses to retry the same desired replicas of a fleet.

    Not resource state: writing it never bumps the serial.
    """
    db.table("rollbacks").create(
        {"id": int, "fleet": str, "fingerprint": str, "reason": str, "evidence": str, "at": str},
        pk="id",
        not_null={"fleet", "fingerprint", "reason", "at"},
    )
    db.table("rollbacks").create_index(["fleet", "fingerprint"])


@migrations()
def m004_lock_start_time(db: Database) -> None:
    """The lock holder's process start time: a pid reused by another program is told apart."""
    if "pid_started" not in db["locks"].columns_dict:
        db["locks"].add_column("pid_started", float)


def known_names() -> list[str]:
    """Names of the migrations this build knows, in order."""
    return [m.name for m in migrations._migrations]


def applied_names(db: Database) -> list[str]:
    """Names of this set's migrations recorded in `db` (read-only)."""
    return [m.name for m in migrations.applied(db)]


def check_not_newer(db: Database, path: object) -> list[str]:
    """Raise StateError if `db` has migrations this build does not know.

    Returns the applied names.
    """
    applied = applied_names(db)
    unknown = [name for name in applied if name not in set(known_names())]
    if unknown:
        raise StateError(
            f"state file {path} was written by a newer infraplan "
            f"(unknown schema migrations: {', '.join(unknown)}); upgrade infraplan to use it"
        )
    return applied


def pending_names(db: Database) -> list[str]:
    """Names of migrations not yet applied to `db`."""
    return [m.name for m in migrations.pending(db)]


def apply(db: Database) -> None:
    """Apply pending migrations (idempotent). The caller owns the transaction."""
    migrations.apply(db)

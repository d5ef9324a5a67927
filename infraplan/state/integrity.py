"""Is a state file whole? A scan of every row and column infraplan reads, run when a state
is opened: a damaged state is refused by every command, before anything is written.

Damage is what a crash, a disk or a hand edit can leave: bytes that are not UTF-8, an
`attributes` cell that is not a JSON object, a `serial` that is not a number, a missing
`lineage` row, a table or page gone. Each problem is located (table, row, column) and
says what is wrong without quoting the cell, which may hold anything.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infraplan.errors import StateDamaged
from infraplan.models.kinds import ResourceKind
from infraplan.state.records import RESOURCE_STATUSES

_MAX_SHOWN = 80  # characters of a row key shown in a message


@dataclass(frozen=True)
class Damage:
    """One problem: where it is (table, row, column) and what is wrong."""

    table: str | None
    row: str | None
    column: str | None
    problem: str

    def where(self) -> str:
        parts = [f"table {self.table}" if self.table else "the file"]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column {self.column}")
        return ", ".join(parts)

    def one_line(self) -> str:
        return f"{self.problem} ({self.where()})" if self.table else self.problem

    def as_dict(self) -> dict:
        return asdict(self)


def damaged_error(path: Path | str, damage: list[Damage], *, hint: bool = True) -> StateDamaged:
    """The one-line error for a damaged state: the first problem, how many more, what to run."""
    first = damage[0]
    more = f" (and {len(damage) - 1} more problem{'s' if len(damage) > 2 else ''})" if len(damage) > 1 else ""
    then = f"; run: infraplan state check --state {path}" if hint else ""
    return StateDamaged(f"state is damaged at {path}: {first.one_line()}{more}{then}",
                        path=str(path), problems=[d.one_line() for d in damage])


# -- cell checks: each takes (sqlite type name, raw value as bytes/int/float/None) -> problem or None --

Check = Callable[[str, Any], "str | None"]


def _text(raw: Any) -> tuple[str | None, str | None]:
    """(decoded text, problem)."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (byte {e.start})"


def text(*, nullable: bool = False, choices: frozenset[str] | None = None, whole_number: bool = False,
         nonempty: bool = False) -> Check:
    """UTF-8 text (one of `choices`, the digits of a whole number, not empty, as asked)."""
    def check(kind: str, raw: Any) -> str | None:
        if kind == "null":
            return None if nullable else "missing (null)"
        if kind != "text":
            return f"not text (a {kind})"
        value, problem = _text(raw)
        if problem:
            return problem
        if nonempty and not value:
            return "empty"
        if choices is not None and value not in choices:
            return f"not one of {', '.join(sorted(choices))}"
        if whole_number and not (value.isascii() and value.isdigit()):
            return "not a whole number"
        return None
    return check


def integer(*, nullable: bool = False, choices: frozenset[int] | None = None) -> Check:
    """An SQLite integer (one of `choices`)."""
    def check(kind: str, raw: Any) -> str | None:
        if kind == "null":
            return None if nullable else "missing (null)"
        if kind != "integer":
            return f"not an integer (a {kind})"
        if choices is not None and raw not in choices:
            return f"not one of {', '.join(map(str, sorted(choices)))}"
        return None
    return check


def number(*, nullable: bool = False) -> Check:
    """An SQLite integer or real."""
    def check(kind: str, raw: Any) -> str | None:
        if kind == "null":
            return None if nullable else "missing (null)"
        return None if kind in ("integer", "real") else f"not a number (a {kind})"
    return check


_JSON_TYPES = {dict: "a JSON object", list: "a JSON list", None: "JSON"}


def json_value(shape: type | None = None, *, nullable: bool = False, items: type | None = None) -> Check:
    """JSON text; `shape` dict or list if the value must be one; `items` the type of a list's items."""
    def check(kind: str, raw: Any) -> str | None:
        if kind == "null":
            return None if nullable else "missing (null)"
        if kind != "text":
            return f"not JSON text (a {kind})"
        value, problem = _text(raw)
        if problem:
            return problem
        try:
            doc = json.loads(value)
        except json.JSONDecodeError as e:
            return f"not valid JSON ({e.msg} at char {e.pos})"
        except RecursionError:
            return "JSON nested too deeply"
        if shape is not None and not isinstance(doc, shape):
            return f"not {_JSON_TYPES[shape]}"
        if items is not None and not all(isinstance(x, items) for x in doc):
            return f"a list holding something other than {items.__name__} values"
        return None
    return check


@dataclass(frozen=True)
class TableSpec:
    """The columns of one table infraplan reads, the key naming a row, and the migration that made it."""

    name: str
    key: tuple[str, ...]
    columns: dict[str, Check]
    migration: str
    added: dict[str, tuple[str, Check]] = field(default_factory=dict)  # column -> (the migration adding it, check)

    def checks(self, applied: list[str]) -> dict[str, Check]:
        """The columns to check in a state whose applied migrations are `applied`."""
        return {**self.columns, **{c: check for c, (m, check) in self.added.items() if m in applied}}


_RESOURCE_KINDS = frozenset(k.value for k in ResourceKind)
TABLES = (
    TableSpec("resources", ("address", "deposed"), {
        "address": text(nonempty=True), "deposed": text(), "kind": text(choices=_RESOURCE_KINDS),
        "provider": text(nullable=True), "status": text(choices=RESOURCE_STATUSES),
        "attributes": json_value(dict), "pending": json_value(dict, nullable=True),
        "dependencies": json_value(list, items=str), "error": text(nullable=True),
        "created_at": text(), "updated_at": text(),
    }, "m001_initial"),
    TableSpec("outputs", ("name",), {
        "name": text(), "value": json_value(), "sensitive": integer(choices=frozenset({0, 1})),
    }, "m001_initial"),
    TableSpec("history", ("id",), {
        "id": integer(), "operation": text(), "plan_hash": text(nullable=True), "summary": json_value(dict),
        "who": text(nullable=True), "started_at": text(nullable=True), "finished_at": text(nullable=True),
        "status": text(), "config_digest": text(nullable=True), "desired_config": json_value(dict, nullable=True),
    }, "m001_initial"),
    TableSpec("audit", ("id",), {
        "id": integer(), "at": text(), "event": text(), "address": text(nullable=True),
        "details": json_value(nullable=True), "who": text(nullable=True),
    }, "m001_initial", added={"prev_hash": ("m005_audit_chain", text(nullable=True)),
                              "hash": ("m005_audit_chain", text(nullable=True))}),
    TableSpec("locks", ("slot",), {
        "slot": integer(choices=frozenset({1})), "id": text(), "who": text(nullable=True),
        "pid": integer(nullable=True), "host": text(nullable=True), "operation": text(), "since": text(),
    }, "m001_initial", added={"pid_started": ("m004_lock_start_time", number(nullable=True))}),
    TableSpec("drift_runs", ("id",), {
        "id": integer(), "started_at": text(), "finished_at": text(nullable=True),
        "duration_s": number(nullable=True), "exit_code": integer(), "counts": json_value(dict),
        "findings": json_value(list), "checked": integer(nullable=True), "who": text(nullable=True),
    }, "m002_drift_and_alerts"),
    TableSpec("drift_activity", ("address",), {
        "address": text(), "instance_id": text(nullable=True), "requests": number(nullable=True),
        "changed_at": number(), "seen_at": number(),
    }, "m002_drift_and_alerts"),
    TableSpec("alerts", ("topic", "fingerprint"), {
        "topic": text(), "fingerprint": text(), "kind": text(nullable=True), "address": text(nullable=True),
        "summary": text(nullable=True), "first_seen": text(), "last_seen": text(),
        "notified_at": text(nullable=True), "cleared_at": text(nullable=True),
        "clear_notified_at": text(nullable=True),
    }, "m002_drift_and_alerts"),
    TableSpec("rollbacks", ("id",), {
        "id": integer(), "fleet": text(), "fingerprint": text(), "reason": text(),
        "evidence": json_value(dict, nullable=True), "at": text(),
    }, "m003_rollouts"),
)
_META_CHECKS = {"lineage": text(nonempty=True), "serial": text(whole_number=True)}


def _shown(raw: Any) -> str:
    text_ = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text_ = text_.replace("\n", "\\n")
    return text_ if len(text_) <= _MAX_SHOWN else text_[:_MAX_SHOWN - 3] + "..."


def _row_name(spec: TableSpec, key: tuple) -> str:
    if spec.name == "resources":
        address, deposed = (_shown(k) for k in key)
        return f"{address} (deposed {deposed})" if deposed else address
    return "/".join(_shown(k) for k in key)


def _quick_check(conn: sqlite3.Connection) -> Iterator[Damage]:
    try:
        rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as e:
        yield Damage(None, None, None, f"the database file is corrupt ({e})")
        return
    problems = [r[0] for r in rows if r[0] != "ok"]
    for p in problems:
        yield Damage(None, None, None, f"the database file is corrupt ({_shown(p.encode())})")


def _meta(conn: sqlite3.Connection) -> Iterator[Damage]:
    rows = conn.execute("SELECT CAST(key AS BLOB), typeof(value), CAST(value AS BLOB) FROM meta").fetchall()
    by_key = {k: (t, v) for k, t, v in rows if k in (b"lineage", b"serial")}
    for key, check in _META_CHECKS.items():
        if key.encode() not in by_key:
            yield Damage("meta", key, None, f"the {key} row is missing")
            continue
        problem = check(*by_key[key.encode()])
        if problem:
            yield Damage("meta", key, "value", problem)


def _table(conn: sqlite3.Connection, spec: TableSpec, applied: list[str]) -> Iterator[Damage]:
    checks = spec.checks(applied)
    cols = list(checks)
    select = ", ".join(f"typeof({c}), CAST({c} AS BLOB)" for c in cols)
    keys = ", ".join(f"CAST({k} AS BLOB)" for k in spec.key)
    cursor = conn.execute(f"SELECT {keys}, {select} FROM {spec.name}")
    n = len(spec.key)
    for row in cursor:
        key, cells = row[:n], row[n:]
        for i, col in enumerate(cols):
            kind, raw = cells[2 * i], cells[2 * i + 1]
            if kind in ("integer", "real"):  # CAST AS BLOB made text of a number: read it as it is
                raw = int(raw) if kind == "integer" else float(raw)
            problem = checks[col](kind, raw)
            if problem:
                yield Damage(spec.name, _row_name(spec, key), col, problem)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def scan(conn: sqlite3.Connection, applied: list[str], *, limit: int = 50) -> list[Damage]:
    """Every problem found (at most `limit`) in a state whose applied migrations are `applied`.

    Reads only: safe on a read-only connection and inside an open transaction.
    """
    found: list[Damage] = []

    def add(items: Iterator[Damage]) -> bool:
        for d in items:
            found.append(d)
            if len(found) >= limit:
                return False
        return True

    if not add(_quick_check(conn)):
        return found
    try:
        present = _tables(conn)
    except sqlite3.DatabaseError as e:
        return found + [Damage(None, None, None, f"the schema cannot be read ({e})")]
    wanted = [("meta", "m001_initial")] + [(t.name, t.migration) for t in TABLES]
    for name, migration in wanted:
        if migration in applied and name not in present:
            found.append(Damage(name, None, None, "the table is missing"))
    steps: list[tuple[str, Callable[[], Iterator[Damage]]]] = []
    if "meta" in present:
        steps.append(("meta", lambda: _meta(conn)))
    for spec in TABLES:
        if spec.name in present:
            steps.append((spec.name, lambda spec=spec: _table(conn, spec, applied)))
    for name, step in steps:
        try:
            if not add(step()):
                break
        except sqlite3.DatabaseError as e:
            found.append(Damage(name, None, None, f"the table cannot be read ({e})"))
    return found[:limit]


@dataclass
class FileReport:
    """What `infraplan state check` found in one state file (or its backup)."""

    path: str
    exists: bool
    damage: list[Damage]
    lineage: str | None = None
    serial: int | None = None
    addresses: list[str] | None = None  # None: the resources table cannot be read
    modified_at: str | None = None

    @property
    def healthy(self) -> bool:
        return self.exists and not self.damage

    def as_dict(self) -> dict:
        return {"path": self.path, "exists": self.exists, "healthy": self.healthy,
                "problems": [d.as_dict() for d in self.damage], "lineage": self.lineage, "serial": self.serial,
                "resources": self.addresses, "modified_at": self.modified_at}


def check_file(path: Path | str) -> FileReport:
    """Scan the state file at `path` without changing it, and read what can still be read."""
    from infraplan.state import migrations
    from infraplan.util.time import iso_utc

    path = Path(path)
    if not path.is_file():
        return FileReport(str(path), False, [])
    report = FileReport(str(path), True, [], modified_at=iso_utc(path.stat().st_mtime))
    conn = None
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        from sqlite_utils import Database

        applied = migrations.applied_names(Database(conn, execute_plugins=False))
        if not applied and not _tables(conn):  # an empty file: a state nothing was written to yet
            report.serial, report.addresses = 0, []
            return report
        if applied:
            report.damage = scan(conn, applied)
        else:  # tables of another program
            report.damage = [Damage(None, None, None, "the file is an SQLite database but not an infraplan state "
                                                      "(no infraplan schema migrations recorded)")]
        report.lineage, report.serial = _readable_meta(conn)
        report.addresses = _readable_addresses(conn)
    except sqlite3.DatabaseError as e:
        report.damage.append(Damage(None, None, None, f"the file cannot be read as an SQLite database ({e})"))
    finally:
        if conn is not None:
            conn.close()
    return report


def _readable_meta(conn: sqlite3.Connection) -> tuple[str | None, int | None]:
    try:
        rows = dict(conn.execute("SELECT CAST(key AS BLOB), CAST(value AS BLOB) FROM meta").fetchall())
    except sqlite3.DatabaseError:
        return None, None
    lineage = rows.get(b"lineage")
    serial = rows.get(b"serial")
    return (None if lineage is None else _shown(lineage),
            int(serial) if serial is not None and serial.isdigit() else None)


def _readable_addresses(conn: sqlite3.Connection) -> list[str] | None:
    try:
        rows = conn.execute("SELECT CAST(address AS BLOB), CAST(deposed AS BLOB) FROM resources "
                            "ORDER BY address, deposed").fetchall()
    except sqlite3.DatabaseError:
        return None
    return [_row_name(TABLES[0], r) for r in rows]

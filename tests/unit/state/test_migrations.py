"""The one migration history builds the same schema on SQLite and PostgreSQL: after every
migration, the same tables, columns, (mapped) types, NOT NULLs and primary keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from infraplan.state import migrations, open_store
from infraplan.state.schema import TYPE_NAMES, Dialect

BOOKKEEPING = {"_sqlite_migrations", migrations.PG_MIGRATIONS_TABLE}
Schema = dict[str, dict]


def _portable(dialect: Dialect, type_name: str) -> str:
    names = {v.lower(): k.value for k, v in TYPE_NAMES[dialect].items()}
    return names.get(type_name.lower(), f"unmapped:{type_name}")


def sqlite_schema(conn: sqlite3.Connection) -> Schema:
    out = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall():
        if table in BOOKKEEPING:
            continue
        info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        pk = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        out[table] = {"pk": pk, "columns": {
            # a primary key column never holds NULL in practice (PostgreSQL says so, SQLite does not)
            name: (_portable(Dialect.SQLITE, type_), bool(notnull) or name in pk)
            for _, name, type_, notnull, _default, _ in info}}
    return out


def pg_schema(conn: psycopg.Connection) -> Schema:
    out: Schema = {}
    for table, name, type_, nullable in conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position").fetchall():
        if table in BOOKKEEPING:
            continue
        out.setdefault(table, {"pk": (), "columns": {}})["columns"][name] = (
            _portable(Dialect.POSTGRES, type_), nullable == "NO")
    for table, column in conn.execute(
            "SELECT tc.table_name, k.column_name FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name "
            "AND k.table_schema = tc.table_schema WHERE tc.constraint_type = 'PRIMARY KEY' "
            "AND tc.table_schema = current_schema() ORDER BY tc.table_name, k.ordinal_position").fetchall():
        if table in out:
            out[table]["pk"] += (column,)
    return out


class _Psycopg:
    """A psycopg connection taking the `?` placeholders the rendered statements use."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def execute(self, sql: str, params: list) -> None:
        self.conn.execute(sql.replace("?", "%s"), params or None)


def test_every_migration_builds_the_same_schema_on_both(tmp_path: Path, postgres_url: str):
    lite = sqlite3.connect(tmp_path / "steps.db", isolation_level=None)
    pg = psycopg.connect(postgres_url, autocommit=True)
    try:
        seen = []
        for m in migrations.MIGRATIONS:
            for sql, params in m.render(Dialect.SQLITE, lambda t: {r[1] for r in lite.execute(
                    f'PRAGMA table_info("{t}")').fetchall()}):
                lite.execute(sql, params)
            pg_columns = lambda t: {r[0] for r in pg.execute(  # noqa: E731
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s", [t]).fetchall()}
            for sql, params in m.render(Dialect.POSTGRES, pg_columns):
                _Psycopg(pg).execute(sql, params)
            here = sqlite_schema(lite)
            assert here == pg_schema(pg), f"the schemas differ after {m.name}"
            assert here not in seen, f"{m.name} changed nothing"
            seen.append(here)
        assert "unmapped" not in repr(seen[-1])
        assert set(seen[-1]) == {"meta", "resources", "outputs", "history", "audit", "locks", "drift_runs",
                                 "drift_activity", "alerts", "rollbacks"}
        assert seen[-1]["resources"]["pk"] == ("address", "deposed")
    finally:
        lite.close()
        pg.close()


def test_both_stores_record_every_migration_and_end_with_the_same_schema(tmp_path: Path, postgres_url: str):
    path = tmp_path / "state.db"
    open_store(path).close()
    open_store(postgres_url).close()
    lite = sqlite3.connect(path)
    pg = psycopg.connect(postgres_url)
    try:
        assert sqlite_schema(lite) == pg_schema(pg)
        names = [r[0] for r in pg.execute(f"SELECT name FROM {migrations.PG_MIGRATIONS_TABLE} ORDER BY id")]
        assert names == migrations.known_names()
        assert [r[0] for r in lite.execute("SELECT name FROM _sqlite_migrations ORDER BY id")] == names
    finally:
        lite.close()
        pg.close()


def test_a_column_a_migration_adds_is_not_added_twice(tmp_path: Path):
    add = next(s for m in migrations.MIGRATIONS for s in m.steps if type(s).__name__ == "AddColumn")
    assert add.render(Dialect.POSTGRES, lambda t: {add.column.name}) == []
    assert add.render(Dialect.SQLITE, lambda t: set())[0][0].startswith('ALTER TABLE "locks" ADD COLUMN')


@pytest.mark.parametrize("dialect", list(Dialect))
def test_every_portable_type_has_a_name_in_each_dialect(dialect: Dialect):
    from infraplan.state.schema import ColumnType

    assert set(TYPE_NAMES[dialect]) == set(ColumnType)

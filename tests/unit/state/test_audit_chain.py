"""The audit log proves itself (#14): a hash chain on both backends; `audit verify` names the
first row edited, deleted or inserted by hand (the database's own append-only rules dropped
first, as someone with the file or the database would)."""

from __future__ import annotations

import pytest

from helpers.cli import run
from infraplan.state import open_store
from infraplan.state.audit_chain import entry_hash, verify


@pytest.fixture
def logged(state_location):
    with open_store(state_location) as store:
        for i in range(5):
            store.audit("apply", address=f"fleet.f[{i}]", details={"n": i}, who=f"actor-{i}")
        rows = store.audit_rows()
    assert len(rows) == 5 and verify(rows).ok
    return state_location


def _raw(location: str, *statements: str) -> None:
    """Change the audit table behind infraplan's back (its append-only triggers or rules dropped)."""
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            for rule in conn.execute("SELECT rulename FROM pg_rules WHERE tablename = 'audit'").fetchall():
                conn.execute(f'DROP RULE "{rule[0]}" ON audit')
            for trig in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit'::regclass "
                                     "AND NOT tgisinternal").fetchall():
                conn.execute(f'DROP TRIGGER "{trig[0]}" ON audit')
            for sql in statements:
                conn.execute(sql)
        return
    import sqlite3

    conn = sqlite3.connect(location)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'"):
        conn.execute(f'DROP TRIGGER "{name}"')
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()


def test_each_row_links_to_the_one_before(logged):
    with open_store(logged, readonly=True) as store:
        rows = store.audit_rows()
    assert rows[0][6] is None and all(rows[i][6] == rows[i - 1][7] for i in range(1, 5))
    rid, at, event, address, details, who, prev, own = rows[2]
    assert own == entry_hash(prev, at, event, address, details, who)


@pytest.mark.parametrize("tamper, row, why", [
    ("UPDATE audit SET who = 'someone-else' WHERE id = 3", 3, "edited"),
    ("DELETE FROM audit WHERE id = 2", 3, "deleted"),
    ("INSERT INTO audit (id, at, event, address, details, who) VALUES (6, 'x', 'apply', NULL, NULL, 'me')", 6,
     "inserted"),
])
def test_a_hand_edit_is_named_by_audit_verify(logged, tamper, row, why):
    state = ["--state", logged]
    r = run("audit", "verify", *state)
    assert r.exit_code == 0 and "intact: 5 rows" in r.output, r.output
    _raw(logged, tamper)
    r = run("audit", "verify", *state)
    assert r.exit_code == 1, r.output
    assert f"the audit log was changed by hand at row #{row}" in r.output and why in r.output


def test_audit_list_filters(logged):
    r = run("audit", "list", "--state", logged, "--actor", "actor-[12]", "--json")
    import json

    rows = json.loads(r.output)
    assert [x["who"] for x in rows] == ["actor-2", "actor-1"] and rows[0]["address"] == "fleet.f[2]"
    r = run("audit", "list", "--state", logged, "--address", "fleet.f[[]4]")
    assert r.exit_code == 0 and "fleet.f[4] by actor-4" in r.output and "actor-3" not in r.output

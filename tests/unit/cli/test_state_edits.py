"""`state rm` removes all the addresses or none; `state mv` never changes a resource's kind."""

from __future__ import annotations

import pytest

from helpers.cli import fingerprint, run
from infraplan.state import StateStore


def _addresses(db) -> list[str]:
    return sorted(r.address for r in StateStore.open_readonly(db).resources())


def test_state_rm_with_one_missing_address_removes_nothing(project):
    db = project / "infraplan.db"
    before = fingerprint(db)
    result = run("state", "rm", "fleet.chat", "fleet.chta", "--state", str(db))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: not in state: 'fleet.chta'; did you mean 'fleet.chat'?; nothing was removed"]
    assert _addresses(db) == ["fleet.chat", "model.llama"]
    after = fingerprint(db)
    assert (after["serial"], after["audit"]) == (before["serial"], before["audit"])
    assert StateStore.open_readonly(db).current_lock() is None


def test_state_rm_of_several_is_one_change(project):
    db = project / "infraplan.db"
    serial = fingerprint(db)["serial"]
    result = run("state", "rm", "fleet.chat", "model.llama", "fleet.chat", "--state", str(db))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["Removed fleet.chat", "Removed model.llama"]
    s = StateStore.open_readonly(db)
    assert _addresses(db) == [] and s.serial == serial + 1
    assert [(e.event, e.address) for e in s.audit_log(2)] == [("state-rm", "model.llama"), ("state-rm", "fleet.chat")]


@pytest.mark.parametrize(("src", "dst", "why"), [
    ("model.llama", "fleet.llama", "a model cannot become a fleet"),
    ("fleet.chat", "fleet.chat2[0]", "a fleet cannot become a replica"),
    ("fleet.chat", "router.chat", "a fleet cannot become a router"),
])
def test_state_mv_refuses_a_kind_change(project, src, dst, why):
    db = project / "infraplan.db"
    before = fingerprint(db)
    result = run("state", "mv", src, dst, "--state", str(db))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: cannot move {src} to {dst}: {why} (state mv renames a resource, it does not change its kind)"]
    assert fingerprint(db) == before


def test_state_mv_refuses_what_is_no_address(project):
    db = project / "infraplan.db"
    result = run("state", "mv", "fleet.chat", "chat", "--state", str(db))
    assert result.exit_code == 1
    assert "not a resource address" in result.output and len(result.output.strip().splitlines()) == 1
    assert _addresses(db) == ["fleet.chat", "model.llama"]


def test_state_mv_within_a_kind_still_works(project):
    db = project / "infraplan.db"
    assert run("state", "mv", "model.llama", "model.llama2", "--state", str(db)).exit_code == 0
    assert _addresses(db) == ["fleet.chat", "model.llama2"]


def test_a_state_of_another_lineage_swapped_in_is_refused_until_accepted(tmp_path):
    """The lineage a config last applied to is remembered beside it (.infraplan/lineages.json);
    another state put in its place is noticed on the next plan (#18 item 18)."""
    from helpers.cli import SMALL_CONFIG, run

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "main.yaml").write_text(SMALL_CONFIG)
        assert run("apply", str(d), "--auto-approve").exit_code == 0
    assert (a / ".infraplan" / "lineages.json").stat().st_mode & 0o077 == 0
    import sqlite3

    src, dst = sqlite3.connect(b / "infraplan.db"), sqlite3.connect(a / "infraplan.db")
    src.backup(dst)  # another project's state, put under a's path (through SQLite, WAL and all)
    src.close()
    dst.close()
    r = run("plan", str(a))
    assert r.exit_code == 1 and "another state was put in its place" in r.output and "--accept-lineage" in r.output
    assert run("apply", str(a), "--auto-approve").exit_code == 1
    assert run("plan", str(a), "--accept-lineage").exit_code == 0
    assert run("apply", str(a), "--auto-approve", "--accept-lineage").exit_code == 0
    assert run("plan", str(a)).exit_code == 0  # accepted: the new lineage is the one remembered


def test_a_foreign_sqlite_file_given_as_state_is_refused_and_left_alone(tmp_path):
    """--state naming another program's SQLite database: refused in one line, never extended
    with infraplan's tables (#18 item 18)."""
    import hashlib
    import sqlite3

    from helpers.cli import SMALL_CONFIG, run

    (tmp_path / "main.yaml").write_text(SMALL_CONFIG)
    db = tmp_path / "customers.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'ada')")
    conn.commit()
    conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for args in (("plan", str(tmp_path)), ("apply", str(tmp_path), "--auto-approve"), ("show",), ("state", "list")):
        r = run(*args, "--state", str(db))
        assert r.exit_code == 1, (args, r.output)
        assert "an SQLite database of another program (tables: customers)" in r.output, (args, r.output)
        assert "Traceback" not in r.output
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    tables = {row[0] for row in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert tables == {"customers"}

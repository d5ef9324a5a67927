"""infraplan.db.backup: written before each apply, destroy, state rm and state mv that changes
the state (0600, a consistent copy); `state check` reports it and what restoring it gives."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from helpers.cli import SMALL_CONFIG, run
from infraplan.state import StateStore

DB = "config/infraplan.db"
BACKUP = "config/infraplan.db.backup"


def _backup_meta(path: Path) -> tuple[int, list[str], str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        serial = int(conn.execute("SELECT value FROM meta WHERE key = 'serial'").fetchone()[0])
        addresses = [a for (a,) in conn.execute("SELECT address FROM resources ORDER BY address")]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        return serial, addresses, mode
    finally:
        conn.close()


def test_apply_that_changes_state_keeps_the_state_before_it(project):
    db, backup = project / "infraplan.db", project / "infraplan.db.backup"
    before = StateStore.open_readonly(db).snapshot()
    assert run("apply", "config", "--auto-approve", "--refresh=false").exit_code == 0  # no changes
    assert not backup.exists(), "a no-op apply wrote a backup"

    (project / "main.yaml").write_text(SMALL_CONFIG.replace("team: ml-platform", "team: research"))
    result = run("apply", "config", "--auto-approve", "--refresh=false")
    assert result.exit_code == 0, result.output

    assert backup.stat().st_mode & 0o777 == 0o600
    serial, addresses, mode = _backup_meta(backup)
    assert serial == before.serial and StateStore.open_readonly(db).serial > before.serial
    assert addresses == sorted(r.address for r in before.resources)
    assert mode == "delete"  # reading it leaves no -wal/-shm beside it
    with StateStore.open_readonly(backup) as old:
        assert old.get("fleet.chat").attributes["labels"] == {"team": "ml-platform"}
    assert not Path(str(backup) + "-wal").exists()


def test_destroy_and_state_edits_keep_a_backup(project):
    backup = project / "infraplan.db.backup"
    serial = StateStore.open_readonly(project / "infraplan.db").serial
    assert run("state", "mv", "fleet.chat", "fleet.talk", "--state", DB).exit_code == 0
    assert _backup_meta(backup)[:2] == (serial, ["fleet.chat", "model.llama"])
    assert run("state", "rm", "fleet.talk", "--state", DB).exit_code == 0
    assert _backup_meta(backup)[:2] == (serial + 1, ["fleet.talk", "model.llama"])
    assert run("destroy", "config", "--auto-approve", "--refresh=false").exit_code == 0
    assert _backup_meta(backup)[:2] == (serial + 2, ["model.llama"])


def test_state_check_of_a_whole_state_and_its_backup(project):
    result = run("state", "check", "--state", DB)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"State {DB} is whole: serial ")
    assert f"No backup at {BACKUP}" in result.output

    (project / "main.yaml").write_text(SMALL_CONFIG.replace("team: ml-platform", "team: research"))
    assert run("apply", "config", "--auto-approve", "--refresh=false").exit_code == 0
    serial = StateStore.open_readonly(project / "infraplan.db").serial
    doc = json.loads(run("state", "check", "--state", DB, "--json").stdout)
    assert doc["state"]["healthy"] and doc["state"]["serial"] == serial
    assert doc["backup"]["healthy"] and doc["backup"]["serial"] == serial - 1
    assert doc["backup"]["resources"] == ["fleet.chat", "model.llama"]


def test_state_check_of_a_damaged_state_says_what_the_backup_restores(project):
    (project / "main.yaml").write_text(SMALL_CONFIG.replace("team: ml-platform", "team: research"))
    assert run("apply", "config", "--auto-approve", "--refresh=false").exit_code == 0
    backup_serial = _backup_meta(project / "infraplan.db.backup")[0]
    conn = sqlite3.connect(project / "infraplan.db")
    conn.execute("UPDATE resources SET attributes = 'oops' WHERE address = 'fleet.chat'")
    conn.execute("INSERT INTO resources (address, kind, status, created_at, updated_at) "
                 "VALUES ('fleet.extra', 'fleet', 'ready', 'x', 'x')")
    conn.commit()
    conn.close()

    result = run("state", "check", "--state", DB)
    assert result.exit_code == 1
    out = result.stdout
    assert f"State {DB} is damaged (1 problem):" in out
    assert "not valid JSON (Expecting value at char 0) (table resources, row fleet.chat, column attributes)" in out
    assert f"Backup {BACKUP} (written " in out and f"serial {backup_serial}, " in out
    assert "It restores: fleet.chat, model.llama" in out
    assert "Not in the backup (forgotten on restore): fleet.extra" in out
    assert f"To restore it: move {DB} and its -wal and -shm files aside, then copy {BACKUP} to {DB}." in out
    assert result.stderr.strip() == (f"Error: state is damaged at {DB}: not valid JSON (Expecting value at char 0) "
                                     "(table resources, row fleet.chat, column attributes)")
    doc = json.loads(run("state", "check", "--state", DB, "--json").stdout)
    assert doc["state"]["problems"] == [{"table": "resources", "row": "fleet.chat", "column": "attributes",
                                         "problem": "not valid JSON (Expecting value at char 0)"}]
    assert doc["backup"]["serial"] == backup_serial

    # a damaged state never replaces a good backup: apply refuses before writing anything
    assert run("apply", "config", "--auto-approve", "--refresh=false").exit_code == 1
    assert _backup_meta(project / "infraplan.db.backup")[0] == backup_serial


def test_state_check_of_an_empty_file_and_of_a_foreign_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("infraplan.db").touch()  # what opening a new state creates before anything is written
    result = run("state", "check")
    assert result.exit_code == 0 and result.output.startswith("State infraplan.db is whole: serial 0, 0 resources.")
    conn = sqlite3.connect("other.db")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    result = run("state", "check", "--state", "other.db")
    assert result.exit_code == 1
    assert "not an infraplan state (no infraplan schema migrations recorded)" in result.stderr

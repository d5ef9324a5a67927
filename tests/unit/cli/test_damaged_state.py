"""The damaged-state corpus: each case in bad_state/ damages a real state file (made by
`infraplan apply`) and every command that reads or writes state is run against it.

A case is one JSON file:

    {"description": "...",
     "sql": ["UPDATE ..."],      # statements run on the state, or
     "flip": "text",             # the first byte of this text in the file set to 0xff, or
     "truncate": 0.33,           # the file cut to this fraction, or
     "garbage": 20000,           # the file replaced by this many random bytes, or
     "zero_page": 4,             # that page (1-based) of the file zeroed
     "message": "..."}           # must be in the one error line

Every command must answer one line `Error: state is damaged at <path>: ...`, exit 1, never a
traceback, and leave the state file's bytes as they were (no lock taken, no backup written).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from helpers.cli import children, run

CORPUS = Path(__file__).parent / "bad_state"
CASES = sorted(p.stem for p in CORPUS.glob("*.json"))
DB = "config/infraplan.db"
COMMANDS = {
    "plan": ["plan", "config"],
    "apply": ["apply", "config", "--auto-approve"],
    "destroy": ["destroy", "config", "--auto-approve"],
    "drift": ["drift", "config"],
    "show": ["show", "--state", DB],
    "state-list": ["state", "list", "--state", DB],
    "state-show": ["state", "show", "fleet.chat", "--state", DB],
    "state-rm": ["state", "rm", "fleet.chat", "--state", DB],
    "state-mv": ["state", "mv", "fleet.chat", "fleet.talk", "--state", DB],
    "output": ["output", "--state", DB],
    "history": ["history", "--state", DB],
    "force-unlock": ["force-unlock", "0123abcd", "--state", DB],
    "rollback": ["rollback", "config", "--auto-approve"],
    "cleanup": ["cleanup", "config", "--auto-approve"],
}


def damage(db: Path, case: dict) -> None:
    if "sql" in case:
        conn = sqlite3.connect(db)
        try:
            for statement in case["sql"]:
                conn.execute(statement)
            conn.commit()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return
    data = bytearray(db.read_bytes())
    if "flip" in case:
        at = data.index(case["flip"].encode())
        data[at] = 0xFF
    elif "truncate" in case:
        data = data[: int(len(data) * case["truncate"])]
    elif "garbage" in case:
        data = bytearray(random.Random(18).randbytes(case["garbage"]))
    elif "zero_page" in case:
        size = int.from_bytes(data[16:18], "big")
        start = (case["zero_page"] - 1) * size
        data[start:start + size] = bytes(size)
    db.write_bytes(bytes(data))


def state_bytes(db: Path) -> dict:
    """The bytes of the state, its WAL (when not empty) and its backup: what a command must not change."""
    out = {}
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + ".backup")):
        data = p.read_bytes() if p.exists() else b""
        out[p.name] = hashlib.sha256(data).hexdigest() if data else None
    return out


@pytest.fixture
def damaged(project):
    def make(case: str) -> tuple[Path, dict]:
        spec = json.loads((CORPUS / f"{case}.json").read_text())
        db = project / "infraplan.db"
        damage(db, spec)
        return db, spec
    return make


def test_corpus_is_complete():
    assert len(CASES) >= 14
    kinds = ("sql", "flip", "truncate", "garbage", "zero_page")
    for case in CASES:
        spec = json.loads((CORPUS / f"{case}.json").read_text())
        assert spec["description"] and spec["message"], case
        assert sum(k in spec for k in kinds) == 1, case


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", CASES)
def test_damaged_state(case, command, damaged):
    db, spec = damaged(case)
    before = state_bytes(db)
    procs = children()

    result = run(*COMMANDS[command])

    assert "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"Error: state is damaged at {DB}: "), lines[0]
    assert spec["message"] in lines[0], lines[0]
    assert state_bytes(db) == before, "the state file changed"
    assert children() <= procs, "a process was started"


@pytest.mark.parametrize("case", CASES)
def test_state_check_names_the_damage(case, damaged):
    db, spec = damaged(case)
    before = state_bytes(db)
    result = run("state", "check", "--state", DB)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"State {DB} is damaged" in result.stdout
    assert spec["message"] in result.stdout
    assert result.stderr.strip().startswith(f"Error: state is damaged at {DB}: ")
    assert "No backup at config/infraplan.db.backup" in result.stdout
    assert state_bytes(db) == before

"""The `backend:` block: where a config's state lives, and its place in the one state rule
(--state, else $INFRAPLAN_STATE, else the block, else infraplan.db beside the config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infraplan.config import load_config
from infraplan.state import BackendKind
from infraplan.workspace import Workspace
from helpers.cli import SMALL_CONFIG, run


def project(tmp_path: Path, backend: str, *, other: str | None = None) -> Path:
    (tmp_path / "main.yaml").write_text(SMALL_CONFIG)
    (tmp_path / "backend.yaml").write_text(backend)
    if other is not None:
        (tmp_path / "other.yaml").write_text(other)
    return tmp_path


def test_a_path_block_puts_the_file_state_beside_the_config(tmp_path: Path):
    d = project(tmp_path, "backend:\n  path: state/team.db\n")
    ws = Workspace(d, env={})
    assert ws.state.kind is BackendKind.SQLITE and ws.state.path == d / "state" / "team.db"
    assert load_config(d, env={}).backend.path == "state/team.db"
    assert run("apply", str(d), "--auto-approve").exit_code == 0
    assert (d / "state" / "team.db").exists() and not (d / "infraplan.db").exists()


def test_a_url_block_names_a_postgres_state_and_the_flag_and_env_win(tmp_path: Path, monkeypatch):
    from infraplan.cli.common import resolve_state

    d = project(tmp_path, "backend:\n  url: postgresql://ops@db.internal:5432/infra\n")
    monkeypatch.delenv("INFRAPLAN_STATE", raising=False)
    assert resolve_state(None, d).target == "postgresql://ops@db.internal:5432/infra"
    assert resolve_state(None, d).kind is BackendKind.POSTGRES
    monkeypatch.setenv("INFRAPLAN_STATE", str(tmp_path / "env.db"))
    assert resolve_state(None, d).target == str(tmp_path / "env.db")
    assert resolve_state(str(tmp_path / "flag.db"), d).target == str(tmp_path / "flag.db")
    monkeypatch.delenv("INFRAPLAN_STATE")
    (d / "backend.yaml").unlink()
    assert resolve_state(None, d).path == d / "infraplan.db"


def test_commands_without_a_config_read_the_block_of_the_config_here(tmp_path: Path, monkeypatch):
    d = project(tmp_path, "backend:\n  path: team.db\n")
    assert run("apply", str(d), "--auto-approve").exit_code == 0
    monkeypatch.chdir(d)
    monkeypatch.delenv("INFRAPLAN_STATE", raising=False)
    listed = run("state", "list")
    assert listed.exit_code == 0, listed.output
    assert "model.llama" in listed.output
    (d / "backend.yaml").write_text("backend:\n  path: elsewhere.db\n")
    assert "no state at " in run("state", "list").output


@pytest.mark.parametrize("text, where, message", [
    ("backend:\n  url: mysql://a@b/c\n", "backend.yaml:2:8",
     "url must be a postgresql:// URL (an SQLite file is given as `path`)"),
    ("backend:\n  url: postgresql://a@b/c\n  path: x.db\n", "backend.yaml:2:3",
     "give exactly one of `url` (PostgreSQL) and `path` (an SQLite file)"),
    ("backend:\n  pth: x.db\n", "backend.yaml:2:3", "unknown key 'pth'; did you mean 'path'?"),
    ("backend:\n  url: postgresql://${var.user}@b/c\n", "backend.yaml:2:8",
     "backend.url cannot use ${...}: the backend is read before variables"),
    ("backend: [1]\n", "backend.yaml:1:10", "backend must be a mapping with `url` or `path`"),
])
def test_a_bad_block_is_one_located_line(tmp_path: Path, text: str, where: str, message: str):
    d = project(tmp_path, text)
    for args in (("validate", str(d)), ("plan", str(d))):
        res = run(*args)
        assert res.exit_code == 1
        errors = [ln for ln in res.output.splitlines() if ": error: " in ln]
        assert len(errors) == 1 and f"{where}: error: {message}" in errors[0], res.output
        assert "Traceback" not in res.output


def test_a_block_in_two_files_is_refused(tmp_path: Path):
    d = project(tmp_path, "backend:\n  path: a.db\n", other="backend:\n  path: b.db\n")
    res = run("validate", str(d))
    assert res.exit_code == 1
    assert "other.yaml:1:1: error: backend is defined twice: at " in res.output and "backend.yaml:1:1" in res.output

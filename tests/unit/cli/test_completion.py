"""Shell completion of state addresses, driven through click's env-var protocol
(`_INFRAPLAN_COMPLETE=bash_complete`, `COMP_WORDS`, `COMP_CWORD`) against a real state."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from infraplan.cli.main import cli

ADDRESSES = ["fleet.chat", "model.llama"]


def complete(line: str, env: dict | None = None) -> list[str]:
    """What bash would be offered for the last word of `line` (a trailing space: a new word)."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    env = {"_INFRAPLAN_COMPLETE": "bash_complete", "COMP_WORDS": line, "COMP_CWORD": str(cword), **(env or {})}
    result = CliRunner().invoke(cli, [], env=env, prog_name="infraplan")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    # bash_complete prints "type,value" per line
    return [v for t, _, v in (line.partition(",") for line in result.stdout.splitlines()) if t == "plain"]


@pytest.mark.parametrize("line", [
    "infraplan state show ",
    "infraplan state show --state config/infraplan.db ",
    "infraplan state rm ",
    "infraplan state mv ",
    "infraplan plan config --target ",
    "infraplan plan config --replace ",
    "infraplan apply config --target ",
    "infraplan destroy config --target ",
    "infraplan plan --state config/infraplan.db --target ",
    "infraplan bench ",
])
def test_addresses_complete(project, monkeypatch, line):
    if "config" not in line:
        monkeypatch.chdir(project)  # ./infraplan.db for commands without a config PATH
    assert complete(line) == ADDRESSES


def test_the_typed_prefix_filters(project, monkeypatch):
    monkeypatch.chdir(project)
    assert complete("infraplan state show fl") == ["fleet.chat"]
    assert complete("infraplan plan . --target mod") == ["model.llama"]


def test_infraplan_state_is_honoured(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "config")
    moved = tmp_path / "elsewhere.db"
    (project / "infraplan.db").rename(moved)
    assert complete("infraplan state show ") == []
    assert complete("infraplan state show ", env={"INFRAPLAN_STATE": str(moved)}) == ADDRESSES


@pytest.mark.parametrize("line", ["infraplan state show ", "infraplan plan . --target ",
                                  "infraplan state show --state nope.db ", "infraplan bench "])
def test_no_state_no_completions_and_nothing_created(tmp_path, monkeypatch, line):
    monkeypatch.chdir(tmp_path)
    assert complete(line) == []
    assert list(tmp_path.iterdir()) == []


def test_a_broken_state_file_gives_no_completions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "infraplan.db").write_bytes(b"not a database at all" * 100)
    before = sorted(tmp_path.iterdir())
    assert complete("infraplan state show ") == []
    assert sorted(tmp_path.iterdir()) == before


def test_the_installed_command_completes(project, monkeypatch):
    """The real entry point and process, as the shell runs it; and the scripts README shows."""
    monkeypatch.chdir(project)
    env = {**os.environ, "_INFRAPLAN_COMPLETE": "bash_complete", "COMP_WORDS": "infraplan state show ",
           "COMP_CWORD": "3"}
    out = subprocess.run([sys.executable, "-m", "infraplan"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"plain,{a}" for a in ADDRESSES]
    for shell in ("bash", "zsh", "fish"):
        env = {**os.environ, "_INFRAPLAN_COMPLETE": f"{shell}_source"}
        script = subprocess.run([sys.executable, "-m", "infraplan"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert script.returncode == 0 and "_INFRAPLAN_COMPLETE" in script.stdout, script.stderr

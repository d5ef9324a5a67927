"""`infraplan destroy --state-only` in-process: no config needed, clear errors otherwise."""

from __future__ import annotations

from helpers.cli import run

from infraplan.state import StateStore


def test_state_only_destroys_from_the_state_alone(project, monkeypatch):
    monkeypatch.delenv("INFRAPLAN_STATE", raising=False)
    (project / "main.yaml").unlink()
    assert StateStore.open_readonly(project / "infraplan.db").snapshot().resources
    result = run("destroy", str(project), "--state-only", "--auto-approve")
    assert result.exit_code == 0, result.output
    assert "Destroy complete!" in result.stdout
    assert StateStore.open_readonly(project / "infraplan.db").snapshot().resources == []


def test_state_only_refuses_variables_and_a_missing_state(tmp_path, monkeypatch):
    monkeypatch.delenv("INFRAPLAN_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    result = run("destroy", "--state-only", "--var", "x=1", "--auto-approve")
    assert result.exit_code == 1 and "--state-only takes no --var" in result.stderr
    result = run("destroy", "--state-only", "--auto-approve")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: no state at infraplan.db"
    assert not (tmp_path / "infraplan.db").exists()

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


def test_state_only_keeps_what_the_last_config_protected(tmp_path, monkeypatch):
    monkeypatch.delenv("INFRAPLAN_STATE", raising=False)
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "main.yaml").write_text(
        "model:\n  m:\n    source: hf://org/tiny\n    revision: abc1234\n"
        "fleet:\n  keep:\n    provider: \"null\"\n    model: model.m\n    replicas: 1\n"
        "    lifecycle: {prevent_destroy: true}\n")
    assert run("apply", str(cfg), "--auto-approve").exit_code == 0
    (cfg / "main.yaml").unlink()
    db = cfg / "infraplan.db"
    before = len(StateStore.open_readonly(db).snapshot().resources)
    result = run("destroy", str(cfg), "--state-only", "--auto-approve")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert "fleet.keep has lifecycle.prevent_destroy set in the last applied config (history #1)" in line
    assert "infraplan state rm" in line
    assert len(StateStore.open_readonly(db).snapshot().resources) == before

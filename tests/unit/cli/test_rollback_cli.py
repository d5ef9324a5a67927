"""`infraplan rollback` (null provider, in-process): what it says about the user's config
files is true, and its diagnostics name the files as stored in the history."""

from __future__ import annotations

import pytest

from helpers.cli import run

CONFIG = """\
variable:
  revision:
    type: string
    default: "0e9e39f"
model:
  llama:
    source: hf://meta-llama/Llama-3.1-8B-Instruct
    revision: ${var.revision}
    served_name: llama-3.1-8b
fleet:
  chat:
    provider: "null"
    model: model.llama
    replicas: 1
    engine:
      type: sim
      args:
        enable_dp_attention: true
"""


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("INFRAPLAN_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "config"
    d.mkdir()
    (d / "main.yaml").write_text(CONFIG)
    result = run("apply", str(d), "--auto-approve")  # history #1
    assert result.exit_code == 0, result.output
    return d


def test_rollback_after_a_variable_change_does_not_blame_the_files(cfg):
    assert run("apply", str(cfg), "--auto-approve", "--var", "revision=4f1a2b3").exit_code == 0
    result = run("rollback", str(cfg), "--auto-approve")
    assert result.exit_code == 0, result.output
    assert "still describe the newer version" not in result.stdout
    assert f"config files in {cfg} are those of history #1" in result.stdout
    assert "other variable values (revision)" in result.stdout


def test_rollback_after_a_file_change_says_the_files_are_newer(cfg):
    (cfg / "main.yaml").write_text(CONFIG.replace('"0e9e39f"', '"4f1a2b3"'))
    assert run("apply", str(cfg), "--auto-approve").exit_code == 0
    result = run("rollback", str(cfg), "--auto-approve")
    assert result.exit_code == 0, result.output
    assert f"config files in {cfg} still describe the newer version (history #2)" in result.stdout


def test_rollback_with_files_edited_since_says_they_differ(cfg):
    (cfg / "main.yaml").write_text(CONFIG.replace('"0e9e39f"', '"4f1a2b3"'))
    assert run("apply", str(cfg), "--auto-approve").exit_code == 0
    (cfg / "main.yaml").write_text(CONFIG.replace('"0e9e39f"', '"aaaaaaa"'))
    result = run("rollback", str(cfg), "--auto-approve")
    assert result.exit_code == 0, result.output
    assert f"config files in {cfg} differ from history #1 (main.yaml)" in result.stdout
    assert "still describe the newer version" not in result.stdout


def test_rollback_warnings_name_the_file_as_stored_in_history(cfg):
    (cfg / "main.yaml").write_text(CONFIG.replace('"0e9e39f"', '"4f1a2b3"'))
    assert run("apply", str(cfg), "--auto-approve").exit_code == 0
    result = run("rollback", str(cfg), "--auto-approve")
    assert result.exit_code == 0, result.output
    # the deprecated arg's warning, located in the stored main.yaml, never in a temporary copy
    assert "! main.yaml:18:9 (as of history #1): enable_dp_attention is deprecated in SGLang" in result.stdout, result.output
    assert "infraplan-rollback-" not in result.output

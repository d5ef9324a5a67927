"""Errors print one line, usage errors included, as the README promises: said once, never
over two lines."""

from __future__ import annotations

import pytest

from helpers.cli import SMALL_CONFIG, run


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.delenv("INFRAPLAN_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "main.yaml").write_text(SMALL_CONFIG.replace("    served_name:", "    bogus: 1\n    served_name:"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.plan").write_text("{")
    return tmp_path


@pytest.mark.parametrize("args, says", [
    (["plan", "--bogus"], "Error: No such option '--bogus'"),
    (["plan", "--parallelism", "0"], "Error: Invalid value for '--parallelism'"),
    (["force-unlock"], "Error: Missing argument 'LOCK_ID'"),
    (["no-such-command"], "Error: No such command 'no-such-command'"),
    (["state", "show"], "Error: Missing argument 'ADDRESS'"),
    (["plan", "bad", "--refresh=false"], "bad/main.yaml:9:5: error: unknown key 'bogus'"),
    (["plan", "empty"], "error: no *.yaml or *.yml files in empty"),
    (["apply", "nowhere", "--auto-approve"], "error: configuration path nowhere does not exist"),
    (["output"], "Error: no state at infraplan.db"),
    (["apply", "broken.plan"], "Error: "),  # a broken saved plan (its wording is the plan reader's)
])
def test_common_errors_are_one_line(here, args, says):
    result = run(*args)
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(says), result.stderr
    assert result.stdout == ""


def test_several_config_errors_are_one_line_each_then_a_count(here):
    (here / "bad" / "main.yaml").write_text(SMALL_CONFIG.replace("    served_name:", "    bogus: 1\n    served_name:")
                                            .replace("model.llama", "model.nope"))
    result = run("plan", "bad", "--refresh=false")
    lines = result.stderr.splitlines()
    assert result.exit_code == 1 and len(lines) == 3, result.stderr
    assert lines[-1] == "Error: configuration has 2 errors; nothing was planned or applied"


def test_a_plan_error_after_warnings_is_said_once(here, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sglang" else real(name, *a))
    (here / "sg").mkdir()
    (here / "sg" / "main.yaml").write_text(SMALL_CONFIG.replace("type: sim", "type: sglang")
                                           .replace("    replicas:", "    accelerators: H100:1\n    replicas:"))
    result = run("plan", "sg", "--refresh=false", "--var", "replicas=1")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.endswith("error: engine sglang needs SGLang installed: pip install 'infraplan[sglang]' "
                         "(at fleet.chat.engine.type)")

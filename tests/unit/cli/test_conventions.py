"""CLI conventions: usage errors exit 1 (2 is only "changes" / "drift found"), one
state-path rule for every command, and INFRAPLAN_LOG."""

from __future__ import annotations

import json
import logging

import pytest

from helpers.cli import SMALL_CONFIG, run

from infraplan.models.kinds import ResourceKind

NULL_CONFIG = """\
model:
  llama:
    source: hf://meta-llama/Llama-3.1-8B-Instruct
    revision: "0e9e39f"
    served_name: llama-3.1-8b
fleet:
  chat:
    provider: "null"
    model: model.llama
    replicas: 1
    engine:
      type: sim
"""


@pytest.fixture(autouse=True)
def _no_state_or_log_env(monkeypatch):
    monkeypatch.delenv("INFRAPLAN_STATE", raising=False)
    monkeypatch.delenv("INFRAPLAN_LOG", raising=False)
    yield
    logging.getLogger("infraplan").handlers.clear()  # in-process runs share loggers


@pytest.fixture
def null_project(tmp_path, monkeypatch):
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "main.yaml").write_text(NULL_CONFIG)
    monkeypatch.chdir(tmp_path)
    return cfg


# -- exit codes ---------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["plan", "--bogus"], "No such option '--bogus'"),
    (["plan", "--parallelism", "0"], "Invalid value for '--parallelism'"),
    (["state", "show"], "Missing argument 'ADDRESS'"),
    (["no-such-command"], "No such command 'no-such-command'"),
])
def test_usage_errors_exit_1(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_detailed_exitcode_with_changes_still_exits_2(null_project):
    result = run("plan", "config", "--refresh=false", "--detailed-exitcode")
    assert result.exit_code == 2, result.output


def test_usage_error_from_installed_entry_point_exits_1(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "from infraplan.cli.main import main; main()", "plan", "--bogus"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "No such option '--bogus'" in proc.stderr


# -- state path -------------------------------------------------------------------------
def test_plan_and_apply_honour_infraplan_state(null_project, tmp_path):
    elsewhere = tmp_path / "elsewhere" / "my.db"
    env = {"INFRAPLAN_STATE": str(elsewhere)}
    assert run("apply", "config", "--auto-approve", "--refresh=false", env=env).exit_code == 0
    assert elsewhere.exists()
    assert not (null_project / "infraplan.db").exists()
    # plan reads the same state: nothing left to do
    assert run("plan", "config", "--refresh=false", "--detailed-exitcode", env=env).exit_code == 0
    # without it, plan reads the (absent) state beside the config: changes
    assert run("plan", "config", "--refresh=false", "--detailed-exitcode").exit_code == 2


def test_state_option_beats_infraplan_state(null_project, tmp_path):
    given = tmp_path / "given.db"
    env = {"INFRAPLAN_STATE": str(tmp_path / "env.db")}
    assert run("apply", "config", "--auto-approve", "--refresh=false", "--state", str(given), env=env).exit_code == 0
    assert given.exists() and not (tmp_path / "env.db").exists()


def test_output_honours_infraplan_state(null_project, tmp_path):
    db = tmp_path / "shared.db"
    env = {"INFRAPLAN_STATE": str(db)}
    (null_project / "main.yaml").write_text(NULL_CONFIG + "output:\n  n:\n    value: 3\n")
    assert run("apply", "config", "--auto-approve", "--refresh=false", env=env).exit_code == 0
    result = run("output", "--json", env=env)  # cwd has no infraplan.db
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"n": 3}


@pytest.mark.parametrize("args", [["output"], ["output", "--json"], ["show"], ["history"], ["state", "list"],
                                  ["state", "show", "fleet.chat"], ["state", "rm", "fleet.chat"],
                                  ["force-unlock", "abc"]])
def test_commands_on_a_missing_state_exit_1_and_create_nothing(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == "Error: no state at infraplan.db"
    if "--json" in args:  # the same error, for scripts, on stdout
        assert json.loads(result.stdout) == {"error": "no state at infraplan.db", "exit_code": 1}
    else:
        assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_missing_state_named_by_infraplan_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "nope.db"
    result = run("output", env={"INFRAPLAN_STATE": str(db)})
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: no state at {db}"
    assert not db.exists()


# -- INFRAPLAN_LOG ----------------------------------------------------------------------
def test_infraplan_log_debug_shows_executor_lines(null_project):
    result = run("apply", "config", "--auto-approve", "--refresh=false", env={"INFRAPLAN_LOG": "debug"})
    assert result.exit_code == 0, result.output
    lines = [x for x in result.stderr.splitlines() if " DEBUG infraplan.apply.executor: " in x]
    assert any(x.endswith("create fleet.chat[0]: provider call begins") for x in lines), result.stderr
    assert any(x.endswith("create fleet.chat[0]: provider call ends") for x in lines), result.stderr
    assert "infraplan.apply.executor" not in result.stdout


def test_no_log_lines_without_infraplan_log(null_project):
    run("plan", "config", "--refresh=false", env={"INFRAPLAN_LOG": "debug"})  # an earlier run switched it on
    result = run("apply", "config", "--auto-approve", "--refresh=false")
    assert result.exit_code == 0, result.output
    assert "infraplan.apply.executor" not in result.output
    assert result.stderr == ""


def test_unknown_infraplan_log_is_one_line_exit_1(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "main.yaml").write_text(SMALL_CONFIG)
    result = run("plan", "--refresh=false", env={"INFRAPLAN_LOG": "loud"})
    assert result.exit_code == 1
    assert result.stderr == "Error: INFRAPLAN_LOG='loud' is not one of debug, info, warn\n"
    assert not (tmp_path / "infraplan.db").exists()


class _Flaky:
    """A provider whose create fails transiently `fails` times, then returns its attributes."""

    def __init__(self, fails: int):
        self.fails = fails
        self.calls = 0

    def create(self, kind, address, attributes):
        from infraplan.errors import TransientProviderError

        self.calls += 1
        if self.calls <= self.fails:
            raise TransientProviderError(f"busy #{self.calls}")
        return {"id": address, **attributes}


def test_executor_logs_each_retry_and_still_retries(caplog, monkeypatch):
    from infraplan.apply.executor import Executor
    from infraplan.errors import TransientProviderError
    import tenacity

    monkeypatch.setattr(tenacity.nap, "sleep", lambda _s: None)  # no real back-off waits
    ex = Executor(store=None, providers=None, retries=3)
    caplog.set_level(logging.DEBUG, logger="infraplan.apply.executor")
    flaky = _Flaky(fails=2)
    assert ex._call(("create", flaky, ResourceKind.REPLICA, "fleet.a[0]", {"x": 1})) == {"id": "fleet.a[0]", "x": 1}
    assert flaky.calls == 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["create fleet.a[0]: provider call begins",
                        "create fleet.a[0]: transient error, retrying: busy #1",
                        "create fleet.a[0]: try 2 of 3 failed: busy #2",
                        "create fleet.a[0]: provider call ends"]
    caplog.clear()
    with pytest.raises(TransientProviderError, match="busy #3"):
        ex._call(("create", _Flaky(fails=5), ResourceKind.REPLICA, "fleet.b[0]", {}))
    assert caplog.records[-1].getMessage() == "create fleet.b[0]: provider call failed: busy #3"

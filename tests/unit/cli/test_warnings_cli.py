"""Warnings: the quick start shows none it does not need, a fleet that never chose its engine
hears it runs the simulator, and --compact-warnings says each in one summary line."""

from __future__ import annotations

import shutil

import pytest

from helpers.cli import SMALL_CONFIG, run
from helpers.paths import REPO

NO_ENGINE = SMALL_CONFIG.replace("    engine:\n      type: sim\n", "")


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.delenv("INFRAPLAN_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command", [["plan"], ["plan", "--var", "revision=4f1a2b3"], ["validate"]])
def test_the_quick_start_shows_no_warning(here, command):
    shutil.copytree(REPO / "examples" / "quickstart", here / "qs", ignore=shutil.ignore_patterns("*.db*", ".infraplan"))
    result = run(*command, "qs", *(["--refresh=false"] if command[0] == "plan" else []))
    assert result.exit_code == 0, result.output
    assert "Warnings:" not in result.output and "warning" not in result.output.lower(), result.output


def test_a_fleet_without_an_engine_type_hears_it_runs_the_simulator(here):
    (here / "main.yaml").write_text(NO_ENGINE)
    result = run("plan", ".", "--refresh=false")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    i = lines.index("  ! main.yaml:11:3: fleet.chat runs the sim engine, not inference: engine.type is not set")
    assert lines[i + 1].startswith("      the sim is infraplan's SGLang API simulator")
    (here / "main.yaml").write_text(SMALL_CONFIG)  # `type: sim` written: chosen, nothing to say
    assert "Warnings:" not in run("plan", ".", "--refresh=false").stdout


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_compact_warnings_says_each_in_one_summary_line(here, command):
    (here / "main.yaml").write_text(NO_ENGINE)
    (here / "b.yaml").write_text("fleet:\n  b:\n    provider: local\n    model: model.llama\n    replicas: 0\n"
                                 "    engine:\n      args: {enable_dp_attention: true}\n")
    result = run(command, ".", "--refresh=false", "--compact-warnings", *(["--auto-approve"] if command == "apply" else []))
    assert result.exit_code == 0, result.output
    block = result.stdout.split("\n\n")[0].splitlines()
    assert block == [
        "Warnings:",
        "  ! fleet.b runs the sim engine, not inference: engine.type is not set",
        "  ! enable_dp_attention is deprecated in SGLang 0.5.23: Deprecated. Use --attn-dp-size <dp-size> "
        "instead of --dp-size <dp-size> --enable-dp-attention.",
        "  ! fleet.chat runs the sim engine, not inference: engine.type is not set",
        "  (run without --compact-warnings for where and why)",
    ]

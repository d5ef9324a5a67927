"""Terraform's single-dash spellings (`-out=x.plan`, `-auto-approve`) work as the long options."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.cli import fingerprint, run
from infraplan.cli.main import cli
from infraplan.cli.tf_flags import long_spellings

HELP = ["-h", "--help"]


def test_plan_out_then_apply_in_terraform_spelling(project):
    db = project / "infraplan.db"
    (project.parent / "vars.yaml").write_text("replicas: 0\n")
    made = run("plan", "config", "-refresh=false", "-var-file=vars.yaml", "-var", "replicas=0",
               "-out=plan.json")
    assert made.exit_code == 0, made.output
    assert "Saved the plan to plan.json" in made.output
    applied = run("apply", "plan.json")
    assert applied.exit_code == 0, applied.output
    assert run("apply", "-auto-approve", "config", "-refresh=false").exit_code == 0
    before = fingerprint(db)
    assert run("plan", "config", "-refresh=false", "-detailed-exitcode").exit_code == 0  # converged
    doc = json.loads(run("plan", "config", "-json", "-refresh=false", "-target=fleet.chat").stdout)
    assert doc["format_version"] == "1.0"
    assert any("resource targeting is in effect" in d["summary"] for d in doc["diagnostics"])
    assert fingerprint(db) == before


def test_refresh_only_and_help_in_terraform_spelling(project):
    result = run("plan", "config", "-refresh-only")
    assert result.exit_code == 0, result.output
    assert "No such option" not in result.output
    assert "state [OPTIONS] COMMAND" in run("state", "-help").output


def test_an_option_the_command_lacks_is_named_as_typed(project):
    result = run("plan", "config", "-lock=false")
    assert result.exit_code == 1
    assert "No such option '--lock'" in result.output
    assert "'-l'" not in result.output


def test_through_the_installed_entry_point(project):
    result = subprocess.run([sys.executable, "-m", "infraplan", "validate", "-json", "config"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["valid"] is True


@pytest.mark.parametrize(("argv", "want"), [
    # option values, short options and words after `--` are left as typed
    (["plan", "--var", "-x=1", "-out=p"], ["plan", "--var", "-x=1", "--out=p"]),
    (["bench", "x", "-c8", "-c", "-json"], ["bench", "x", "-c8", "-c", "-json"]),
    (["bench", "x", "-c8", "-json"], ["bench", "x", "-c8", "--json"]),
    (["state", "rm", "-state=s.db", "--", "-target"], ["state", "rm", "--state=s.db", "--", "-target"]),
    (["-version"], ["--version"]),
])
def test_long_spellings(argv, want):
    assert long_spellings(cli, argv, HELP) == want

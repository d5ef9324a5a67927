"""Rego policies judged against every plan (regopy, in a child process): deny stops the plan
with each message, warn is shown, a policy that does not parse is located, and the shipped
examples pass their own cases."""

from __future__ import annotations

import shutil

import pytest

from helpers.cli import fingerprint, run
from helpers.paths import REPO

CONFIG = """\
provider:
  box: {type: "null"}
model:
  m: {source: hf://org/m, revision: "a1", owner: ml-platform}
fleet:
  web:
    provider: box
    model: model.m
    replicas: 1
    accelerators: H100:8
    region: eu-west-1
    labels: {env: prod}
    rollout: {strategy: recreate}
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "main.yaml").write_text(CONFIG)
    shutil.copytree(REPO / "examples" / "policies" / "policies", tmp_path / "policies")
    return tmp_path


def test_a_deny_stops_the_plan_with_each_message_and_nothing_is_applied(project):
    r = run("plan", str(project))
    assert r.exit_code == 1, r.output
    for msg in ("fleet.web[0]: H100s run only in us-east-1 and us-central1, not in region eu-west-1",
                "model.m declares no compliance.license",
                "fleet.web is a prod fleet: a recreate rollout would stop every replica"):
        assert f"policy denies the plan: {msg}" in r.output, r.output
    assert "Traceback" not in r.output
    assert run("apply", str(project), "--auto-approve").exit_code == 1
    assert not (project / "infraplan.db").exists() or fingerprint(project / "infraplan.db")["serial"] == 0


def test_a_plan_the_policies_allow_applies_and_their_warnings_are_shown(project):
    (project / "main.yaml").write_text(CONFIG.replace("owner: ml-platform", "owner: ml-platform, compliance: "
                                                      "{license: apache-2.0}").replace("eu-west-1", "us-east-1")
                                       .replace("    rollout: {strategy: recreate}\n", ""))
    r = run("plan", str(project))
    assert r.exit_code == 0, r.output
    assert "policy: fleet.web is a prod fleet without a rollout block" in r.output
    assert run("apply", str(project), "--auto-approve").exit_code == 0


def test_a_policy_that_does_not_parse_is_a_located_error_in_validate_and_plan(project):
    (project / "policies" / "broken.rego").write_text("package infraplan\n\ndeny contains msg if { msg := }\n")
    for cmd in ("validate", "plan"):
        r = run(cmd, str(project))
        assert r.exit_code == 1, r.output
        assert "broken.rego:3:" in r.output and "Invalid assignment operator" in r.output, r.output
        assert "Traceback" not in r.output


def test_policy_test_runs_the_shipped_examples_cases_and_fails_a_wrong_expectation(project, tmp_path):
    r = run("policy", "test", str(project))
    assert r.exit_code == 0, r.output
    assert "5 passed, 0 failed" in r.output
    case = project / "policies" / "tests" / "over_budget.json"
    case.write_text(case.read_text().replace("over the budget of $200/h", "over budget"))
    r = run("policy", "test", str(project))
    assert r.exit_code == 1 and "FAIL:" in r.output and "over_budget.json" in r.output, r.output


def test_a_policy_that_crashes_the_interpreter_is_an_error_not_a_crash(project):
    # regopy 1.5 segfaults on some `with` tests: the child process dies, infraplan reports it
    (project / "policies" / "crash.rego").write_text(
        'package infraplan\nimport rego.v1\nd contains "x" if { input.a > 200 }\n'
        'test_crash if { count(d) == 0 with input as {"a": 1} }\n')
    r = run("policy", "test", str(project))
    assert r.exit_code == 1, r.output
    assert "crashed" in r.output or "passed" in r.output  # whichever regopy does, infraplan itself survives
    assert "Traceback" not in r.output


def test_the_policies_example_plans_clean_and_its_cases_pass():
    r = run("plan", str(REPO / "examples" / "policies"), "--refresh=false")
    assert r.exit_code == 0 and "policy denies" not in r.output, r.output
    r = run("policy", "test", str(REPO / "examples" / "policies"))
    assert r.exit_code == 0 and "5 passed, 0 failed" in r.output, r.output

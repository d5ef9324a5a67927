"""`apply PLANFILE` refuses planning options: a saved plan's targets were fixed when it was made."""

from __future__ import annotations

import pytest

from helpers.cli import fingerprint, run


@pytest.mark.parametrize("args", [("--target", "fleet.chat"), ("--replace", "fleet.chat[0]"), ("--refresh-only",),
                                  ("--refresh=false",)])
def test_apply_of_a_saved_plan_refuses_planning_options(project, args):
    db = project / "infraplan.db"
    made = run("plan", "config", "--refresh=false", "--var", "replicas=1", "--out", "plan.json")
    assert made.exit_code == 0, made.output
    before = fingerprint(db)

    result = run("apply", "plan.json", *args)

    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    flag = args[0].split("=")[0]
    assert lines == [f"Error: {flag} cannot be used with a saved plan (plan.json): it was fixed when the plan was "
                     f"made; run `infraplan plan {flag}... --out FILE` again, then `infraplan apply FILE`"]
    assert fingerprint(db) == before  # nothing applied


def test_apply_of_a_saved_plan_still_takes_its_other_options(project):
    assert run("plan", "config", "--refresh=false", "--out", "plan.json").exit_code == 0
    result = run("apply", "plan.json", "--parallelism", "2")
    assert result.exit_code == 0, result.output

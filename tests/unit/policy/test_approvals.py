"""Approvals bound to the plan (#14): an unapproved prod plan is refused and the same plan
applies after the required approvals; an approval of one plan never counts for another."""

from __future__ import annotations

import json

import pytest

from helpers.cli import run
from infraplan.state import open_store

CONFIG = """\
provider:
  box: {{type: "null"}}
model:
  m: {{source: hf://org/m, revision: "{rev}"}}
fleet:
  staging-web: {{provider: box, model: model.m, replicas: 1}}
  prod-web: {{provider: box, model: model.m, replicas: {prod}}}
"""

POLICY = """\
groups:
  sre: ["bob@*", "carol@*"]
bindings:
  - {role: admin, actors: ["alice@*"]}
  - {role: admin, groups: [sre]}
  - {role: viewer, actors: ["dave@*"]}
approvals:
  - {name: prod, addresses: ["fleet.prod-*"], count: 2}
"""


def as_(actor, *args):
    return run(*args, env={"INFRAPLAN_ACTOR": actor})


@pytest.fixture
def project(tmp_path):
    (tmp_path / "main.yaml").write_text(CONFIG.format(rev="a1", prod=1))
    assert as_("alice@laptop", "apply", str(tmp_path), "--auto-approve").exit_code == 0
    (tmp_path / "infraplan.policy.yaml").write_text(POLICY)
    return tmp_path


def test_a_prod_plan_needs_two_approvals_from_others_and_then_applies(project):
    (project / "main.yaml").write_text(CONFIG.format(rev="a1", prod=2))
    r = as_("alice@laptop", "apply", str(project), "--auto-approve")
    assert r.exit_code == 1 and "this plan needs approvals ('prod' (2 from others than you))" in r.output, r.output
    plan = str(project / "prod.plan")
    assert as_("alice@laptop", "plan", str(project), "--out", plan).exit_code == 0
    r = as_("alice@laptop", "apply", plan)
    assert r.exit_code == 1 and "needs 2 approval(s) from others than alice@laptop" in r.output
    assert "has none" in r.output
    r = as_("alice@laptop", "approve", plan)
    assert r.exit_code == 1 and "made this plan" in r.output  # the author's own never counts
    r = as_("dave@desk", "approve", plan)
    assert r.exit_code == 1 and "dave@desk may not approve" in r.output  # a viewer may not approve
    assert as_("bob@box", "approve", plan, "--comment", "capacity for the launch").exit_code == 0
    assert as_("bob@box", "approve", plan).exit_code == 0  # twice by one actor is one approval
    r = as_("alice@laptop", "apply", plan)
    assert r.exit_code == 1 and "has 1 (bob@box)" in r.output
    assert as_("carol@mac", "approve", plan).exit_code == 0
    listed = json.loads(as_("alice@laptop", "approvals", plan, "--json").output)
    assert [a["by"] for a in listed["approvals"]] == ["bob@box", "bob@box", "carol@mac"]
    assert listed["rules"][0]["met"] is True and listed["rules"][0]["approvers"] == ["bob@box", "carol@mac"]
    r = as_("alice@laptop", "apply", plan)
    assert r.exit_code == 0, r.output
    with open_store(project / "infraplan.db", readonly=True) as store:
        assert [r.attributes.get("index") for r in store.resources() if r.address.startswith("fleet.prod-web[")] \
            == [0, 1]
        events = [e.event for e in store.audit_log()]
    assert events.count("approve") == 3


def test_an_approval_of_one_plan_does_not_count_for_another(project):
    (project / "main.yaml").write_text(CONFIG.format(rev="a1", prod=2))
    first = str(project / "first.plan")
    assert as_("alice@laptop", "plan", str(project), "--out", first).exit_code == 0
    for who in ("bob@box", "carol@mac"):
        assert as_(who, "approve", first).exit_code == 0
    (project / "main.yaml").write_text(CONFIG.format(rev="a1", prod=3))
    second = str(project / "second.plan")
    assert as_("alice@laptop", "plan", str(project), "--out", second).exit_code == 0
    r = as_("alice@laptop", "apply", second)
    assert r.exit_code == 1 and "has none" in r.output


def test_staging_needs_no_approval(project):
    (project / "main.yaml").write_text(CONFIG.format(rev="a1", prod=1).replace(
        "staging-web: {provider: box, model: model.m, replicas: 1}",
        "staging-web: {provider: box, model: model.m, replicas: 2}"))
    assert as_("alice@laptop", "apply", str(project), "--auto-approve").exit_code == 0

"""Who may change what: infraplan.policy.yaml roles bound to actors and groups, scoped by address;
every command asks before it takes the lock, a refusal is one audited line, exit 1."""

from __future__ import annotations

import pytest

from helpers.cli import fingerprint, run
from infraplan.state import StateStore

CONFIG = """\
provider:
  box: {type: "null"}
model:
  m: {source: hf://org/m, revision: "${var.rev}"}
variable:
  rev: {type: string, default: a1}
fleet:
  staging-web: {provider: box, model: model.m, replicas: 1}
  prod-web: {provider: box, model: model.m, replicas: 1}
"""

POLICY = """\
groups:
  platform: ["alice@*", "bob@*"]
roles:
  releaser: {actions: [plan, apply]}
bindings:
  - {role: admin, actors: [root-admin]}
  - {role: releaser, groups: [platform], addresses: ["fleet.staging-*", "model.*"]}
  - {role: viewer, actors: ["carol@*"]}
  - {role: viewer, groups: [platform]}
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "main.yaml").write_text(CONFIG)
    assert run("apply", str(tmp_path), "--auto-approve", env={"INFRAPLAN_ACTOR": "root-admin"}).exit_code == 0
    (tmp_path / "infraplan.policy.yaml").write_text(POLICY)
    return tmp_path


def as_(actor: str, *args: str):
    return run(*args, env={"INFRAPLAN_ACTOR": actor})


def test_a_releaser_changes_staging_but_not_prod_and_the_refusal_is_audited(project):
    db = project / "infraplan.db"
    (project / "main.yaml").write_text(CONFIG.replace("prod-web: {provider: box, model: model.m, replicas: 1}",
                                                      "prod-web: {provider: box, model: model.m, replicas: 2}"))
    before = fingerprint(db)
    r = as_("alice@laptop", "apply", str(project), "--auto-approve")
    assert r.exit_code == 1, r.output
    line = [x for x in r.output.splitlines() if "access denied" in x]
    assert as_("alice@laptop", "plan", str(project)).exit_code == 0  # she may plan it all (viewer)
    assert line == ["Error: access denied: alice@laptop may not apply fleet.prod-web: its apply rights cover only "
                    f"fleet.staging-*, model.* ({project / 'infraplan.policy.yaml'})"], r.output
    assert fingerprint(db)["serial"] == before["serial"]
    (denied,) = [a for a in StateStore.open_readonly(db).audit_log() if a.event == "access-denied"]
    assert denied.who == "alice@laptop" and denied.address == "fleet.prod-web" and denied.details["action"] == "apply"

    (project / "main.yaml").write_text(CONFIG.replace("staging-web: {provider: box, model: model.m, replicas: 1}",
                                                      "staging-web: {provider: box, model: model.m, replicas: 2}"))
    assert as_("alice@laptop", "apply", str(project), "--auto-approve").exit_code == 0


def test_viewers_plan_only_and_strangers_nothing(project):
    assert as_("carol@desk", "plan", str(project)).exit_code == 0
    r = as_("carol@desk", "destroy", str(project), "--auto-approve")
    assert r.exit_code == 1 and "carol@desk may not destroy" in r.output and "do not allow destroy" in r.output
    r = as_("mallory@evil", "plan", str(project))
    assert r.exit_code == 1 and "no binding names this actor" in r.output


@pytest.mark.parametrize("args, action", [
    (("state", "rm", "fleet.staging-web[0]"), "state-edit"),
    (("state", "mv", "fleet.staging-web", "fleet.other"), "state-edit"),
    (("taint", "fleet.staging-web[0]"), "state-edit"),
    (("force-unlock", "some-id"), "force-unlock"),
])
def test_state_edits_and_force_unlock_need_their_own_rights(project, args, action):
    db = project / "infraplan.db"
    before = fingerprint(db)
    r = as_("alice@laptop", *args, "--state", str(db))
    assert r.exit_code == 1 and f"alice@laptop may not {action}" in r.output, r.output
    assert fingerprint(db)["serial"] == before["serial"]
    if action == "state-edit":
        assert as_("root-admin", *args, "--state", str(db)).exit_code == 0


def test_a_policy_file_with_an_unknown_role_or_action_is_a_located_error(project):
    (project / "infraplan.policy.yaml").write_text(POLICY.replace("role: viewer", "role: viwer")
                                                   .replace("[plan, apply]", "[plan, aply]"))
    r = as_("root-admin", "plan", str(project))
    assert r.exit_code == 1, r.output
    assert "infraplan.policy.yaml:4:30:" in r.output and "unknown action 'aply'" in r.output
    assert "unknown role 'viwer'" in r.output and "Traceback" not in r.output

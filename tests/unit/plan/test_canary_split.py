"""A canary's shares are worker counts: the plan says so only where the router splits evenly."""

from __future__ import annotations

import pytest

from infraplan.workspace import Workspace

CONFIG = """\
variable:
  rev: {{type: string, default: a1}}
provider:
  box: {{type: "null"}}
model:
  m: {{source: hf://org/m, revision: "${{var.rev}}"}}
fleet:
  web:
    provider: box
    model: model.m
    replicas: 3
    rollout: {{strategy: canary, steps: [25, 100]}}
router:
  gw: {{provider: box, fleets: [fleet.web]{policy}}}
"""


@pytest.mark.parametrize("policy, warned", [("", True), (", policy: power_of_two", True),
                                            (", policy: round_robin", False), (", policy: random", False)])
def test_a_canary_behind_an_uneven_policy_is_warned_at_the_router(tmp_path, policy, warned):
    (tmp_path / "main.yaml").write_text(CONFIG.format(policy=policy))
    ws = Workspace(tmp_path, env={})
    assert ws.apply(ws.plan()).ok
    plan = Workspace(tmp_path, env={}, var_args=["rev=b2"]).plan()
    assert any("canary" in r for c in plan.changes for r in c.reasons)  # the new version rolls out by canary
    hits = [d for d in plan.diagnostics if "does not split evenly" in d["summary"]]
    assert bool(hits) == warned
    if warned:
        assert hits[0]["path"] == "router.gw.policy" and hits[0]["location"]["line"] == 14, hits[0]
        assert "round_robin" in hits[0]["summary"] and hits[0]["severity"] == "warning"

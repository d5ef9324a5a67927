"""A canary rollout through `infraplan apply`, with the real router (smg) and sim replicas."""

from __future__ import annotations

import pytest

from infraplan.state import StateStore

pytest.importorskip("smg")
pytestmark = pytest.mark.e2e

CONFIG = """
variable:
  rev: {type: string, default: aaa1111}
  ttft: {type: number, default: 10}
model:
  m: {source: hf://org/tiny, revision: "${var.rev}"}
fleet:
  chat:
    model: model.m
    replicas: 2
    engine: {type: sim, sim: {ttft_ms: "${var.ttft}", tpot_ms: 1}}
    rollout:
      strategy: canary
      steps: [50, 100]
      analysis:
        window_s: 2
        min_requests: 5
        gates:
          - {metric: ttft_p95_ms, max_ratio: 2.0}
          - {metric: error_rate, max: 0.01}
router:
  front: {fleets: [fleet.chat], policy: round_robin}
"""


def revisions(state):
    snap = StateStore.open_readonly(state).snapshot()
    return sorted(r.attributes["model_revision"] for r in snap.resources if r.kind == "replica" and not r.deposed)


@pytest.mark.slow
def test_canary_rolls_back_a_slow_version_and_refuses_it_until_forced(project):
    project.write("main.yaml", CONFIG)
    project.run("apply", "--auto-approve")
    assert revisions(project.state) == ["aaa1111", "aaa1111"]

    plan = project.run("plan", "--var", "rev=bbb2222", "--var", "ttft=250")
    assert "rollout: canary" in plan.stdout

    bad = project.run("apply", "--auto-approve", "--var", "rev=bbb2222", "--var", "ttft=250", check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    out = bad.stdout + bad.stderr
    assert "ttft_p95_ms" in out and "Traceback" not in out
    assert revisions(project.state) == ["aaa1111", "aaa1111"]  # the old version serves on
    model = StateStore.open_readonly(project.state).get("model.m")
    assert model.attributes["revision"] == "aaa1111"  # the registry still records what serves
    events = [a.event for a in StateStore.open_readonly(project.state).audit_log()]
    assert "rollback" in events

    again = project.run("plan", "--var", "rev=bbb2222", "--var", "ttft=250", check=False)
    assert again.returncode == 1 and "was rolled back" in again.stderr

    # a fixed version rolls out through every canary step
    project.run("apply", "--auto-approve", "--var", "rev=ccc3333", "--var", "ttft=10")
    assert revisions(project.state) == ["ccc3333", "ccc3333"]
    assert project.run("plan", "--var", "rev=ccc3333", "--var", "ttft=10", "--detailed-exitcode",
                       check=False).returncode == 0

"""`infraplan destroy --state-only`: with the config gone and no variables, the state alone
is enough to destroy everything it holds, real local processes included."""

from __future__ import annotations

import psutil
import pytest

from infraplan.state import StateStore

pytestmark = pytest.mark.e2e

CONFIG = """
variable:
  revision:
    type: string
provider:
  nil:
    type: "null"
    settings: {latency_ms: 1}
model:
  m:
    source: hf://org/tiny
    revision: ${var.revision}
fleet:
  a:
    provider: nil
    model: model.m
    replicas: 2
  b:
    provider: local
    model: model.m
    replicas: 2
    engine: {type: sim}
    depends_on: [fleet.a]
"""


def test_destroy_state_only_removes_everything_without_config_or_variables(project, leftover_servers):
    project.write("main.yaml", CONFIG)
    project.run("apply", "--auto-approve", "--var", "revision=abc1234")
    pids = [r.attributes["pid"] for r in StateStore.open_readonly(project.state).snapshot().resources
            if r.provider == "local" and r.kind == "replica"]
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    (project.path / "main.yaml").unlink()

    plain = project.run("destroy", "--auto-approve", check=False)  # needs the config
    assert plain.returncode == 1

    res = project.run("destroy", "--state-only", "--auto-approve")
    assert "Destroy: 0 to add, 0 to change, 7 to destroy." in res.stdout
    # the null block had settings (latency_ms): they are not in state, and the plan says so
    assert "provider nil (null): provider settings are not in state; defaults used" in res.stdout
    assert "provider local" not in res.stdout
    # reverse dependency order: fleet.b (depends on fleet.a) goes before fleet.a's replicas
    lines = res.stdout.splitlines()
    assert max(i for i, s in enumerate(lines) if s.startswith("fleet.b[")) < \
        min(i for i, s in enumerate(lines) if s.startswith("fleet.a[") and "Destroying" in s)
    assert StateStore.open_readonly(project.state).snapshot().resources == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    assert leftover_servers() == []
    history = StateStore.open_readonly(project.state).history()
    assert history[0].operation == "destroy" and history[0].status == "ok"

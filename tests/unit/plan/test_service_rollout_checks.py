"""The planner's checks of a `placement: service` fleet's rollout block (SkyServe's update modes
and canaries). They read the replicas' `placement` attribute, so the null provider shows them
without SkyPilot."""

from __future__ import annotations

from helpers.cli import run

CONFIG = """\
model:
  m: {source: hf://org/m, revision: r1, served_name: m}
fleet:
  chat:
    provider: "null"
    model: model.m
    replicas: 2
    placement: service
    rollout: {strategy: STRATEGY}
"""


def _plan(tmp_path, strategy: str):
    (tmp_path / "main.yaml").write_text(CONFIG.replace("STRATEGY", strategy))
    return run("plan", str(tmp_path), "--refresh=false", "--state", str(tmp_path / "s.db"))


def test_a_skyserve_canary_without_a_router_is_a_warning_while_nothing_rolls_out(tmp_path):
    r = _plan(tmp_path, "canary")
    assert r.exit_code == 0, r.output
    warned = [line for line in r.output.splitlines() if "no router fronts fleet.chat" in line]
    assert warned and warned[0].lstrip().startswith("! ") and "Traceback" not in r.output


def test_recreate_is_refused_for_a_skyserve_fleet_at_its_place_in_the_config(tmp_path):
    r = _plan(tmp_path, "recreate")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"{tmp_path}/main.yaml:4:3: error: fleet.chat: rollout strategy recreate is not available with " \
           "placement: service" in r.output, r.output

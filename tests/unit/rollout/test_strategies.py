"""Strategies against real sim replicas through an in-memory traffic switch (no smg)."""

from __future__ import annotations

import pytest

from infraplan.models.config import RolloutBlock
from infraplan.rollout import RolloutFailed
from infraplan.rollout.strategies import run_rollout
from infraplan.serving.sglang_client import SGLangClient

from helpers.rollout import FLEET, Load  # noqa: E402


def revisions(fleet) -> list[str]:
    out = []
    for i in range(fleet.n):
        with SGLangClient(fleet.store.get(f"{FLEET}[{i}]").attributes["endpoint"]) as c:
            out.append(c.revision())
    return out


def test_rolling_keeps_capacity_and_ends_on_the_new_revision(rollout_fleet):
    fleet = rollout_fleet(4)
    spec = RolloutBlock(strategy="rolling", max_surge=1, max_unavailable=0)
    deleted_while_routed = []
    real_delete = fleet.provider.delete

    def delete(kind, address, attrs):
        if attrs.get("endpoint") in fleet.switch.held():
            deleted_while_routed.append(address)
        return real_delete(kind, address, attrs)

    fleet.provider.delete = delete
    with Load(fleet.switch) as load:
        result = run_rollout(fleet.context(spec, fleet.changes("r2")))
    assert not result.rolled_back
    assert min(len(h) for h in fleet.switch.history) >= 4  # N - max_unavailable at every moment
    assert max(len(h) for h in fleet.switch.history) <= 5  # N + max_surge
    assert deleted_while_routed == []
    assert load.sent > 10 and load.failed == []
    assert revisions(fleet) == ["r2"] * 4
    assert sorted(fleet.switch.held()) == sorted(fleet.endpoints())
    assert not [r for r in fleet.store.resources() if r.deposed]
    steps = [e.details["step"] for e in fleet.store.audit_log() if e.event == "rollout-step"]
    assert steps.count("batch") == 4 and "done" in steps


def test_rolling_with_max_unavailable_goes_two_at_a_time(rollout_fleet):
    fleet = rollout_fleet(4)
    spec = RolloutBlock(strategy="rolling", max_surge=1, max_unavailable=1)
    result = run_rollout(fleet.context(spec, fleet.changes("r2")))
    assert [s["step"] for s in result.steps].count("batch") == 2
    assert min(len(h) for h in fleet.switch.history) >= 3
    assert revisions(fleet) == ["r2"] * 4


def _canary(**analysis) -> RolloutBlock:
    return RolloutBlock(strategy="canary", steps=[25, 100], readiness_timeout_s=10,
                        analysis={"window_s": 1.5, "min_requests": 5, "load_concurrency": 4, **analysis})


def _assert_rolled_back(fleet, before: dict, exc: RolloutFailed) -> None:
    old_urls = sorted(before.values())
    assert sorted(fleet.switch.held()) == old_urls
    now = {r.address: r.attributes["endpoint"] for r in fleet.store.resources()}
    assert now == before  # the old objects are current again, nothing deposed or new left
    assert revisions(fleet) == ["r1"] * fleet.n
    (rb,) = fleet.store.rollbacks(FLEET)
    assert rb["reason"] in str(exc) and exc.result.rolled_back
    assert [e.event for e in fleet.store.audit_log()].count("rollback") == 1


def test_canary_with_a_slower_version_stops_at_its_first_step(rollout_fleet):
    fleet = rollout_fleet(2)
    before = {r.address: r.attributes["endpoint"] for r in fleet.store.resources()}
    spec = _canary(gates=[{"metric": "ttft_p95_ms", "max_ratio": 1.5}])
    with pytest.raises(RolloutFailed) as info:
        run_rollout(fleet.context(spec, fleet.changes("r2", ttft_ms=300.0)))
    ev = info.value.evidence
    (gate,) = ev["gates"]
    assert gate["metric"] == "ttft_p95_ms" and not gate["passed"]
    assert gate["value"] > 1.5 * gate["baseline"] and ev["canary"]["requests"] >= 5
    weights = [s for s in info.value.result.steps if s["step"] == "weight"]
    assert [w["target"] for w in weights] == [25]  # never reached 100%
    assert len(max(fleet.switch.history, key=len)) == 3  # 2 old + 1 canary (25% asked, 33% reached)
    _assert_rolled_back(fleet, before, info.value)


def test_canary_that_fails_requests_rolls_back(rollout_fleet):
    fleet = rollout_fleet(2)
    before = {r.address: r.attributes["endpoint"] for r in fleet.store.resources()}
    spec = _canary(gates=[{"metric": "error_rate", "max": 0.05}])
    with pytest.raises(RolloutFailed) as info:
        run_rollout(fleet.context(spec, fleet.changes("r2", error_rate=0.5)))
    ev = info.value.evidence
    assert ev["canary"]["error_rate"] > 0.05 and ev["baseline"]["error_rate"] == 0
    _assert_rolled_back(fleet, before, info.value)


def test_canary_that_passes_ends_on_the_new_revision(rollout_fleet):
    fleet = rollout_fleet(2)
    spec = _canary(gates=[{"metric": "error_rate", "max": 0.05}], window_s=0.8)
    result = run_rollout(fleet.context(spec, fleet.changes("r2")))
    assert [round(s["share"]) for s in result.steps if s["step"] == "weight"] == [33, 100]
    assert revisions(fleet) == ["r2", "r2"] and not fleet.store.rollbacks()
    assert sorted(fleet.switch.held()) == sorted(fleet.endpoints())


def test_golden_failure_stops_before_any_traffic_reaches_the_new_version(rollout_fleet):
    fleet = rollout_fleet(2)
    before = {r.address: r.attributes["endpoint"] for r in fleet.store.resources()}
    old = set(before.values())
    spec = RolloutBlock(strategy="canary", steps=[50, 100],
                        golden_prompts=[{"prompt": "answer in JSON", "max_tokens": 6, "json_valid": True}])
    with pytest.raises(RolloutFailed) as info:
        run_rollout(fleet.context(spec, fleet.changes("r2")))
    assert "golden" in str(info.value) and info.value.evidence["golden"]["results"][0]["problems"]
    assert all(set(h) <= old for h in fleet.switch.history)  # no new worker was ever routed
    _assert_rolled_back(fleet, before, info.value)

"""The router resource kind without processes: config, desired resources, plan and apply graph."""

from __future__ import annotations

import pytest

from infraplan.config import validate_config
from infraplan.plan.expand import expand
from infraplan.apply.executor import build_apply_graph
from infraplan.plan.model import Change, Plan
from infraplan_providers.local import router as smg_router

BASE = """
model:
  m: {source: hf://org/m}
fleet:
  a: {model: model.m, replicas: 2}
  b:
    model: model.m
    for_each: [us, eu]
router:
  gw: {fleets: [fleet.a, fleet.b], policy: round_robin}
output:
  url: {value: "${router.gw.endpoint}/v1"}
"""


def load(tmp_path, text):
    (tmp_path / "main.yaml").write_text(text)
    return validate_config(tmp_path, env={})


def test_router_block_loads_and_expands(tmp_path):
    config, diags = load(tmp_path, BASE)
    assert config is not None, [d.one_line() for d in diags]
    assert list(config.routers) == ["router.gw"]
    assert config.outputs["url"].depends_on == {"router.gw"}
    d = expand(config)["router.gw"]
    assert d.kind == "router" and d.provider == "local" and d.provider_type == "local"
    assert d.depends_on == {"fleet.a", 'fleet.b["us"]', 'fleet.b["eu"]'}
    assert d.attributes["worker_sets"] == ["${fleet.a.endpoints}", '${fleet.b["us"].endpoints}',
                                           '${fleet.b["eu"].endpoints}']
    assert d.attributes["policy"] == "round_robin" and d.attributes["kind"] == "router"


def test_dangling_fleet_reference_is_located(tmp_path):
    _, diags = load(tmp_path, BASE.replace("fleets: [fleet.a, fleet.b]", "fleets: [fleet.a, fleet.bb]"))
    errors = [d for d in diags if d.severity == "error"]
    assert len(errors) == 1
    assert "unknown fleet 'fleet.bb'; did you mean 'fleet.b'?" in errors[0].summary
    assert errors[0].location.line == 10


@pytest.mark.parametrize("bad, message", [
    ("policy: nope", "Input should be"),
    ("fleets: [model.m]", "must reference a fleet"),
    ("fleets: []", "at least 1"),
])
def test_bad_router_blocks(tmp_path, bad, message):
    key = bad.split(":")[0]
    text = BASE.replace("policy: round_robin", bad) if key == "policy" else BASE.replace("fleets: [fleet.a, fleet.b]", bad)
    _, diags = load(tmp_path, text)
    assert any(message in d.summary for d in diags if d.severity == "error"), [d.one_line() for d in diags]


def test_router_reference_is_only_known_after_apply_in_provider_blocks(tmp_path):
    text = BASE + "provider:\n  local:\n    settings: {host: '${router.gw.endpoint}'}\n"
    _, diags = load(tmp_path, text)
    assert any("only known after apply" in d.summary for d in diags)


def test_provider_plan_replaces_on_policy_and_updates_worker_sets():
    prior = {"kind": "router", "policy": "round_robin", "port": 31000, "labels": {},
             "worker_sets": [["http://127.0.0.1:1"]], "instance_id": "x", "workers": ["http://127.0.0.1:1"]}
    same = dict(prior, port=None, worker_sets=[["http://127.0.0.1:2"]])
    p = smg_router.plan(prior, same)
    assert p.requires_replace == []
    assert p.attributes["port"] == 31000 and p.attributes["instance_id"] == "x"  # same process keeps its identity
    assert smg_router.plan(prior, dict(same, policy="random")).requires_replace == ["policy"]
    assert smg_router.plan(prior, dict(same, port=31001)).requires_replace == ["port"]
    assert smg_router.plan(None, dict(same, port=31001)).create_before_destroy_ok is False


def test_flatten_keeps_order_and_refuses_unresolved_sets():
    assert smg_router.flatten([["a", "b"], ["b", "c"]]) == ["a", "b", "c"]
    from infraplan.errors import ProviderError

    with pytest.raises(ProviderError):
        smg_router.flatten(["${fleet.a.endpoints}"])


def _change(address, kind, action, deps=(), fleet=None, cbd=False):
    return Change(address=address, kind=kind, action=action, provider="local" if kind in ("replica", "router") else None,
                  dependencies=list(deps), fleet=fleet, create_before_destroy=cbd)


def _plan(changes):
    return Plan(changes=changes, lineage="l", serial=1, config_digest="d", config_path=".")


def test_old_replica_is_deleted_only_after_the_router_update():
    changes = [
        _change("fleet.a[0]", "replica", "replace", ["model.m"], "fleet.a", cbd=True),
        _change("fleet.a[1]", "replica", "replace", ["model.m"], "fleet.a", cbd=True),
        _change("fleet.a", "fleet", "update", ["fleet.a[0]", "fleet.a[1]", "model.m"]),
        _change("router.gw", "router", "update", ["fleet.a"]),
        _change("model.m", "model", "update"),
    ]
    g = build_apply_graph(_plan(changes))
    for i in (0, 1):
        assert g.has_edge("update:router.gw", f"delete:fleet.a[{i}]:old")
        assert g.has_edge("write:fleet.a", f"delete:fleet.a[{i}]:old")
    assert g.has_edge("write:fleet.a", "update:router.gw")


def test_scale_down_updates_the_router_before_stopping_the_replica():
    changes = [
        _change("fleet.a[1]", "replica", "delete", ["model.m"], "fleet.a"),
        _change("fleet.a", "fleet", "update", ["fleet.a[0]", "model.m"]),
        _change("router.gw", "router", "update", ["fleet.a"]),
    ]
    g = build_apply_graph(_plan(changes))
    assert g.has_edge("update:router.gw", "delete:fleet.a[1]")
    assert not g.has_edge("delete:fleet.a[1]", "write:fleet.a")
    # without a router the fleet entry still waits for the delete
    g2 = build_apply_graph(_plan(changes[:2]))
    assert g2.has_edge("delete:fleet.a[1]", "write:fleet.a")


def test_fleet_endpoints_leave_out_replicas_being_removed():
    from infraplan.apply.executor import Executor

    ex = Executor(store=None, providers=None)
    ex._remember("fleet.a[0]", {"fleet": "fleet.a", "index": 0, "endpoint": "http://x:1"})
    ex._remember("fleet.a[1]", {"fleet": "fleet.a", "index": 1, "endpoint": "http://x:2"})
    ex._leaving = {"fleet.a[1]"}
    assert ex._fleet_endpoints("fleet.a") == {"endpoints": ["http://x:1"], "endpoint": "http://x:1"}


def test_missing_smg_is_a_plan_time_error(monkeypatch):
    monkeypatch.setattr(smg_router, "smg_installed", lambda: False)
    diags = smg_router.plan(None, {"kind": "router", "policy": "random", "port": None, "worker_sets": []}).diagnostics
    assert [(d.severity, d.summary) for d in diags] == [("error", "the router needs smg: pip install 'infraplan[router]'")]


def test_router_retries_map_to_smg_launch_flags(tmp_path):
    from infraplan.serving.smg import retry_args

    base = ["py", "-m", "smg", "launch", "--host", "h", "--port", "1", "--prometheus-host", "h",
            "--prometheus-port", "2", "--policy", "round_robin"]
    assert smg_router.argv("py", "h", 1, 2, "round_robin") == base  # smg's defaults: retries on
    assert smg_router.argv("py", "h", 1, 2, "round_robin", {}) == base
    assert smg_router.argv("py", "h", 1, 2, "round_robin", {"retries": {"enabled": False}}) == base + ["--disable-retries"]
    tuned = {"max_retries": 3, "initial_backoff_ms": 10, "max_backoff_ms": 200, "backoff_multiplier": 2.0,
             "jitter_factor": 0.0}
    assert retry_args(tuned) == [
        "--retry-max-retries", "3", "--retry-initial-backoff-ms", "10", "--retry-max-backoff-ms", "200",
        "--retry-backoff-multiplier", "2.0", "--retry-jitter-factor", "0.0"]

    # from the config: only what differs from smg's defaults reaches the router's attributes
    def retries(block):
        config, diags = load(tmp_path, BASE.replace("policy: round_robin", f"policy: round_robin, retries: {block}"))
        assert config is not None, [d.one_line() for d in diags]
        return expand(config)["router.gw"].attributes.get("retries")

    assert "retries" not in expand(load(tmp_path, BASE)[0])["router.gw"].attributes
    assert retries("{enabled: true}") is None
    assert retries("{enabled: false}") == {"enabled": False}
    assert retries("{max_retries: 2, jitter_factor: 0}") == {"max_retries": 2, "jitter_factor": 0.0}
    assert retry_args(retries("{max_retries: 2}")) == ["--retry-max-retries", "2"]


@pytest.mark.parametrize("block, message", [
    ("{enabled: false, max_retries: 2}", "max_retries has no effect with `enabled: false`"),
    ("{max_retries: 0}", "greater than or equal to 1"),
    ("{jitter_factor: 2}", "less than or equal to 1"),
    ("{retry: 3}", "unknown key 'retry'"),
])
def test_bad_router_retries(tmp_path, block, message):
    _, diags = load(tmp_path, BASE.replace("policy: round_robin", f"policy: round_robin, retries: {block}"))
    assert any(message in d.summary for d in diags if d.severity == "error"), [d.one_line() for d in diags]


def test_provider_plan_replaces_the_router_when_its_retries_change():
    prior = {"kind": "router", "policy": "round_robin", "port": None, "labels": {},
             "worker_sets": [["http://127.0.0.1:1"]], "instance_id": "x"}
    # a state written before `retries` existed means smg's defaults: no change
    assert smg_router.plan(prior, dict(prior)).requires_replace == []
    assert smg_router.plan(prior, dict(prior, retries={})).requires_replace == []
    off = dict(prior, retries={"enabled": False})
    assert smg_router.plan(prior, off).requires_replace == ["retries"]
    assert smg_router.plan(off, dict(off)).requires_replace == []
    assert smg_router.plan(off, prior).requires_replace == ["retries"]  # back to the defaults
    assert smg_router.plan(off, dict(prior, retries={"max_retries": 2})).requires_replace == ["retries"]


def test_fleet_endpoints_list_a_shared_service_endpoint_once():
    from infraplan.apply.executor import Executor

    ex = Executor(store=None, providers=None)
    ex._leaving = set()
    for i in range(3):  # SkyServe slots: every replica records the service's load balancer
        ex._remember(f"fleet.s[{i}]", {"fleet": "fleet.s", "index": i, "endpoint": "http://44.1.2.3:30001"})
    assert ex._fleet_endpoints("fleet.s") == {"endpoints": ["http://44.1.2.3:30001"],
                                              "endpoint": "http://44.1.2.3:30001"}


def test_router_fault_isolation_maps_to_smg_flags_and_a_change_relaunches_it(tmp_path):
    """circuit_breaker, timeouts, rate_limit and health_check become smg 1.13's own launch flags
    (durations in whole seconds); only what differs from smg's defaults reaches the attributes."""
    from infraplan.models.config import ROUTER_LAUNCH_BLOCKS
    from infraplan.serving.smg import LAUNCH_ATTRS, launch_args

    assert LAUNCH_ATTRS == ROUTER_LAUNCH_BLOCKS
    block = ("circuit_breaker: {failure_threshold: 3, open_duration: 90s}, timeouts: {request: 2m}, "
             "rate_limit: {max_concurrent_requests: 8, queue_size: 0}, "
             "health_check: {interval: 5s, endpoint: /health_generate}")
    config, diags = load(tmp_path, BASE.replace("policy: round_robin", f"policy: round_robin, {block}"))
    assert config is not None, [d.one_line() for d in diags]
    attrs = expand(config)["router.gw"].attributes
    assert attrs["circuit_breaker"] == {"failure_threshold": 3, "open_duration": "90s"}
    assert launch_args(attrs) == [
        "--cb-failure-threshold", "3", "--cb-timeout-duration-secs", "90", "--request-timeout-secs", "120",
        "--max-concurrent-requests", "8", "--queue-size", "0", "--health-check-interval-secs", "5",
        "--health-check-endpoint", "/health_generate"]
    assert launch_args({"circuit_breaker": {"enabled": False}, "health_check": {"enabled": False}}) == [
        "--disable-circuit-breaker", "--disable-health-check"]
    plain = expand(load(tmp_path, BASE)[0])["router.gw"].attributes
    assert not set(ROUTER_LAUNCH_BLOCKS) & set(plain)  # smg's defaults: nothing recorded
    pplan = smg_router.plan(dict(plain, instance_id="x", port=1), attrs)
    assert set(pplan.requires_replace) == {"circuit_breaker", "timeouts", "rate_limit", "health_check"}
    bad, diags = load(tmp_path, BASE.replace("policy: round_robin", "policy: round_robin, "
                                             "circuit_breaker: {enabled: false, failure_threshold: 2}"))
    assert bad is None and any("has no effect with `enabled: false`" in d.one_line() for d in diags)

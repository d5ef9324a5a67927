"""Service placement (SkyServe) through SkyClient, with the fake SDK returning SkyPilot's real types."""

from __future__ import annotations

import pytest

from infraplan.errors import TransientProviderError, ProviderError, ResourceNotFound
from infraplan.providers.contract import ProviderContext
from infraplan_providers.skypilot import client as client_mod
from infraplan_providers.skypilot.client import SkyClient
from infraplan_providers.skypilot.provider import SkyPilotProvider
from infraplan_providers.skypilot.service import policy_replicas
from infraplan.models.kinds import ResourceKind

from helpers.sky_offline import sky
from sky.serve import ReplicaStatus, ServiceStatus, UpdateMode

SVC = {"readiness_path": "/health_generate", "initial_delay_seconds": 600, "update_mode": "blue_green",
       "load_balancing_policy": "least_load"}
ATTRS = {"fleet": "fleet.chat", "model_source": "hf://org/m", "model_revision": "r1", "served_name": "m",
         "accelerators": "H100:8", "cloud": "aws", "region": "us-east-1", "args": {"tp_size": 8},
         "placement": "service", "service": SVC, "labels": {}}


@pytest.fixture
def provider(tmp_path, fake):
    ctx = ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path,
                          settings={"poll_s": 0})
    return SkyPilotProvider(ctx, client=SkyClient(timeout_s=5, poll_s=0))


def slot(i, **kw):
    return dict(ATTRS, index=i, **kw)


def create_fleet(provider, n, **kw):
    prepared = [provider.prepare_create(ResourceKind.REPLICA, f"fleet.chat[{i}]", slot(i, **kw)) for i in range(n)]
    return [provider.create(ResourceKind.REPLICA, f"fleet.chat[{i}]", a) for i, a in enumerate(prepared)]


def calls(fake, name):
    return [c for c in fake.calls if c[0] == name]


def test_up_waits_for_ready_and_records_the_endpoint(provider, fake):
    fake.serve.script["infraplan-chat"] = [(ServiceStatus.CONTROLLER_INIT, []),
                                           (ServiceStatus.REPLICA_INIT, [ReplicaStatus.PROVISIONING] * 2),
                                           (ServiceStatus.READY, [ReplicaStatus.READY, ReplicaStatus.STARTING]),
                                           (ServiceStatus.READY, [ReplicaStatus.READY] * 2)]
    out = create_fleet(provider, 2)
    ups = calls(fake, "serve.up")
    assert len(ups) == 1 and not calls(fake, "serve.update")  # one `serve up` sized for both slots
    task = ups[0][2]
    assert isinstance(task, sky.Task) and isinstance(task.service, sky.serve.SkyServiceSpec)
    spec = task.service
    assert (spec.readiness_path, spec.initial_delay_seconds, spec.min_replicas) == ("/health_generate", 600, 2)
    assert spec.load_balancing_policy == "least_load"
    assert "--revision r1" in task.run and "--tp-size 8" in task.run
    assert [o["endpoint"] for o in out] == ["http://44.1.2.3:30001"] * 2
    assert {o["service_name"] for o in out} == {"infraplan-chat"} and out[0]["status"] == "running"
    r = provider.read(ResourceKind.REPLICA, "fleet.chat[1]", out[1])
    assert r.exists and r.healthy and r.attributes["endpoint"] == "http://44.1.2.3:30001"


def test_autoscaling_policy_becomes_a_replica_policy(provider, fake):
    create_fleet(provider, 1, service=dict(SVC, min_replicas=1, max_replicas=4, target_qps_per_replica=2.5))
    spec = calls(fake, "serve.up")[0][2].service
    assert (spec.min_replicas, spec.max_replicas, spec.target_qps_per_replica) == (1, 4, 2.5)
    assert policy_replicas(spec.autoscaling_policy_str()) == 1


def test_plan_revision_change_is_in_place_and_update_calls_serve_update(provider, fake):
    out = create_fleet(provider, 2)
    new = [slot(i, model_revision="r2") for i in range(2)]
    for prior, desired in zip(out, new):
        p = provider.plan(ResourceKind.REPLICA, prior, desired)
        assert p.requires_replace == [] and p.attributes["model_revision"] == "r2"
    assert provider.plan(ResourceKind.REPLICA, out[1], slot(1, placement="cluster")).requires_replace  # leaving SkyServe replaces
    fresh = SkyPilotProvider(provider.context, client=provider.client)  # a new run: count read back from status
    got = [fresh.update(ResourceKind.REPLICA, f"fleet.chat[{i}]", out[i], new[i]) for i in (1, 0)]
    upd = calls(fake, "serve.update")
    assert len(upd) == 1 and upd[0][3] is UpdateMode.BLUE_GREEN  # only the owner talks to SkyServe
    assert "--revision r2" in upd[0][2].run and upd[0][2].service.min_replicas == 2
    assert got[1]["service_version"] == 2 and got[0]["model_revision"] == "r2"
    fresh.update(ResourceKind.REPLICA, "fleet.chat[0]", got[1], dict(got[1], labels={"team": "a"}))
    assert len(calls(fake, "serve.update")) == 1  # labels stay in state


def test_scale_up_and_down_keep_the_replica_count(provider, fake):
    out = create_fleet(provider, 2)
    fresh = SkyPilotProvider(provider.context, client=provider.client)
    third = fresh.create(ResourceKind.REPLICA, "fleet.chat[2]", fresh.prepare_create(ResourceKind.REPLICA, "fleet.chat[2]", slot(2)))
    assert calls(fake, "serve.update")[-1][2].service.min_replicas == 3 and third["endpoint"] == out[0]["endpoint"]
    fresh.delete(ResourceKind.REPLICA, "fleet.chat[2]", third)
    assert calls(fake, "serve.update")[-1][2].service.min_replicas == 2
    assert not fresh.read(ResourceKind.REPLICA, "fleet.chat[2]", third).exists  # slot 2 is no longer part of the service
    fresh.delete(ResourceKind.REPLICA, "fleet.chat[1]", out[1])
    fresh.delete(ResourceKind.REPLICA, "fleet.chat[0]", out[0])
    assert calls(fake, "serve.down") and not fake.serve.services
    assert not fresh.read(ResourceKind.REPLICA, "fleet.chat[0]", out[0]).exists
    fresh.delete(ResourceKind.REPLICA, "fleet.chat[0]", out[0])  # already gone: success
    fake.controller_down = True  # no controller: no services (ClusterNotUpError)
    assert not fresh.read(ResourceKind.REPLICA, "fleet.chat[0]", out[0]).exists


@pytest.mark.parametrize("status, replicas, shown", [
    (ServiceStatus.FAILED, [ReplicaStatus.FAILED_INITIAL_DELAY, ReplicaStatus.FAILED_PROBING], "FAILED_PROBING"),
    (ServiceStatus.NO_REPLICA, [], "no replicas"),
    (ServiceStatus.CONTROLLER_FAILED, [], "CONTROLLER_FAILED"),
])
def test_failed_service_is_a_clear_provider_error(provider, fake, status, replicas, shown):
    fake.serve.script["infraplan-chat"] = [(status, replicas)]
    with pytest.raises(ProviderError, match=f"infraplan-chat failed: .*{shown}") as info:
        create_fleet(provider, 1)
    assert "sky serve logs" in str(info.value)
    r = provider.read(ResourceKind.REPLICA, "fleet.chat[0]", slot(0, service_name="infraplan-chat"))
    assert r.exists and r.healthy is False and status.value in r.detail


def test_skypilot_exceptions_are_mapped(provider, fake):
    fake.fail_next = [sky.exceptions.ApiServerConnectionError("http://127.0.0.1:46580")]
    with pytest.raises(TransientProviderError):  # raised once: the engine retries
        create_fleet(provider, 1)
    out = create_fleet(provider, 1)
    assert out[0]["status"] == "running"
    fake.fail_next = [sky.exceptions.ResourcesUnavailableError("no H100 anywhere")]
    with pytest.raises(client_mod.NoCapacity):
        provider.client.serve_up(calls(fake, "serve.up")[0][2], "other")
    fake.fail_next = [RuntimeError("Service 'x' does not exist.")]
    with pytest.raises(ProviderError, match="serve.update failed: RuntimeError"):
        provider.client.serve_update(calls(fake, "serve.up")[0][2], "x", "rolling")
    fake.serve.services.clear()
    with pytest.raises(ResourceNotFound):
        provider.update(ResourceKind.REPLICA, "fleet.chat[0]", out[0], slot(0, model_revision="r9", service_name="infraplan-chat"))


def test_invalid_service_settings_fail_at_plan_time(provider):
    p = provider.plan(ResourceKind.REPLICA, None, slot(0, service=dict(SVC, load_balancing_policy="fastest")))
    assert p.diagnostics and "invalid SkyServe service settings" in p.diagnostics[0].summary
    ok = provider.plan(ResourceKind.REPLICA, None, slot(0))
    assert ok.attributes["service_name"] == "infraplan-chat" and not [d for d in ok.diagnostics
                                                                        if d.severity == "error"]


def test_the_fleet_rollout_strategy_becomes_skyserve_update_mode():
    from infraplan.models.config import FleetBlock

    fb = FleetBlock.model_validate({"model": "model.m", "placement": "service", "rollout": {"strategy": "blue_green"}})
    assert fb.provider_attributes()["service"]["update_mode"] == "blue_green"
    plain = FleetBlock.model_validate({"model": "model.m", "placement": "cluster", "rollout": {"strategy": "blue_green"}})
    assert "service" not in plain.provider_attributes()


def test_only_the_owner_slots_new_version_redeploys(provider, fake):
    out = create_fleet(provider, 2)
    assert provider.plan(ResourceKind.REPLICA, out[0], slot(0, model_revision="r2")).redeploys
    assert not provider.plan(ResourceKind.REPLICA, out[1], slot(1, model_revision="r2")).redeploys  # slot 1 follows slot 0
    assert not provider.plan(ResourceKind.REPLICA, out[0], slot(0, labels={"team": "a"})).redeploys  # state only


def test_a_canary_is_a_separate_service_and_deleting_it_leaves_the_primary(provider, fake):
    out = create_fleet(provider, 2)
    assert provider.service_workers("fleet.chat[0]", out[0]) == ["http://10.0.0.1:30000", "http://10.0.0.2:30000"]
    desired = dict(slot(0, model_revision="r2", service=dict(SVC, min_replicas=1, max_replicas=4)),
                   service_name="infraplan-chat", canary=True)
    canary = provider.create_canary("fleet.chat[0]", desired, 2)
    (up,) = [c for c in calls(fake, "serve.up") if c[1] == "infraplan-chat-canary"]
    spec = up[2].service
    assert (spec.min_replicas, spec.max_replicas) == (2, None)  # fixed size: no autoscaling of a canary
    assert "--revision r2" in up[2].run
    assert canary["service_name"] == "infraplan-chat-canary" and canary["status"] == "running"
    assert canary["workers"] == ["http://10.1.0.1:30000", "http://10.1.0.2:30000"]
    assert provider.read(ResourceKind.REPLICA, "fleet.chat[0]", canary).exists
    # a canary recorded before its result (an apply that died) still names the canary, not the primary
    provider.delete(ResourceKind.REPLICA, "fleet.chat[0]", desired)
    assert calls(fake, "serve.down")[-1] == ("serve.down", ("infraplan-chat-canary",))
    assert set(fake.serve.services) == {"infraplan-chat"} and provider.read(ResourceKind.REPLICA, "fleet.chat[0]", out[0]).exists


def test_a_leftover_canary_service_is_replaced(provider, fake):
    create_fleet(provider, 1)
    desired = dict(slot(0, model_revision="r2"), canary=True)
    provider.create_canary("fleet.chat[0]", desired, 1)
    provider.create_canary("fleet.chat[0]", dict(desired, model_revision="r3"), 1)
    assert [c[0] for c in fake.calls if c[0] in ("serve.up", "serve.down") and
            (c[1] if c[0] == "serve.up" else c[1][0]) == "infraplan-chat-canary"] == ["serve.up", "serve.down", "serve.up"]
    assert "--revision r3" in fake.serve.services["infraplan-chat-canary"]["task"].run


def test_a_new_update_mode_alone_redeploys_nothing(provider, fake):
    out = create_fleet(provider, 1)
    changed = dict(slot(0), service=dict(SVC, update_mode="rolling"))
    assert not provider.plan(ResourceKind.REPLICA, out[0], changed).redeploys
    provider.update(ResourceKind.REPLICA, "fleet.chat[0]", out[0], changed)
    assert not calls(fake, "serve.update")  # recorded in state only

"""Service placement (SkyServe) through the plugin worker, SkyPilot's SDK faked inside it
(returning its real types): one `serve up` per fleet, updates and scaling by the owner slot,
canaries as separate services, failures as clear errors.

Two workers for the module, each one run of infraplan sharing the fake's services; the fake is
reset for each test, and each test has a fleet of its own (a worker remembers what it sent
to a service during its run)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import pytest

from infraplan.errors import ProviderError, ResourceNotFound, TransientProviderError
from infraplan.providers.contract import ResourceKind
from infraplan.providers.plugin.host import RemoteProvider
from infraplan_providers.skypilot.client import NoCapacity
from infraplan_providers.skypilot.service import policy_replicas

from helpers.skypilot_plugin import NEEDS_PLUGIN, FakeSkyControl, faked_worker

pytestmark = NEEDS_PLUGIN

REPLICA = ResourceKind.REPLICA
SETTINGS = {"poll_s": 0, "timeout_s": 5}
SVC = {"readiness_path": "/health_generate", "initial_delay_seconds": 600, "update_mode": "blue_green",
       "load_balancing_policy": "least_load"}
ATTRS = {"model_source": "hf://org/m", "model_revision": "r1", "served_name": "m", "accelerators": "H100:8",
         "cloud": "aws", "region": "us-east-1", "args": {"tp_size": 8}, "placement": "service", "service": SVC,
         "labels": {}}
_names = itertools.count(1)


@dataclass
class Fleet:
    """One test's fleet, on this run's worker `p` (its fake: `fake`)."""

    name: str
    p: RemoteProvider
    fake: FakeSkyControl

    @property
    def service(self) -> str:
        return f"infraplan-{self.name}"

    @property
    def canary(self) -> str:
        return f"{self.service}-canary"

    def addr(self, i: int) -> str:
        return f"fleet.{self.name}[{i}]"

    def slot(self, i: int, **kw: Any) -> dict[str, Any]:
        return dict(ATTRS, fleet=f"fleet.{self.name}", index=i, **kw)

    def create(self, n: int, **kw: Any) -> list[dict[str, Any]]:
        """Slots 0..n-1 as one apply makes them: every create prepared first, then run."""
        prepared = [self.p.prepare_create(REPLICA, self.addr(i), self.slot(i, **kw)) for i in range(n)]
        return [self.p.create(REPLICA, self.addr(i), a) for i, a in enumerate(prepared)]

    def services(self) -> set[str]:
        """The services the fake SkyServe runs now."""
        f = self.fake.services_file
        return set(json.loads(f.read_text())) if f.exists() else set()


@pytest.fixture(scope="module")
def run1(module_dir, sky_module_env):
    with faked_worker(module_dir, sky_module_env, "run1", **SETTINGS) as w:
        yield w


@pytest.fixture(scope="module")
def run2(module_dir, sky_module_env):
    with faked_worker(module_dir, sky_module_env, "run2", **SETTINGS) as w:
        yield w


@pytest.fixture
def fleet(run1) -> Fleet:
    p, fake = run1
    fake.reset()
    return Fleet(f"chat{next(_names)}", p, fake)


@pytest.fixture
def next_run(run2, fleet) -> tuple[RemoteProvider, FakeSkyControl]:
    """A later run of infraplan: a worker that remembers nothing of `fleet`, over the same services."""
    p, fake = run2
    fake.send(reset=True)
    return p, fake


def test_up_waits_for_ready_and_records_the_endpoint(fleet):
    f = fleet
    f.fake.send(script={f.service: [["CONTROLLER_INIT", []], ["REPLICA_INIT", ["PROVISIONING"] * 2],
                                    ["READY", ["READY", "STARTING"]], ["READY", ["READY"] * 2]]})
    out = f.create(2)
    ups = f.fake.calls("serve.up")
    assert len(ups) == 1 and not f.fake.calls("serve.update")  # one `serve up` sized for both slots
    task = ups[0]["task"]
    spec = task["service"]
    assert task["class"] == "sky.task.Task" and spec["class"] == "sky.serve.service_spec.SkyServiceSpec"
    assert (spec["readiness_path"], spec["initial_delay_seconds"], spec["min_replicas"]) == ("/health_generate", 600, 2)
    assert spec["load_balancing_policy"] == "least_load"
    assert "--revision r1" in task["run"] and "--tp-size 8" in task["run"]
    assert len(f.fake.calls("serve.status")) >= 4  # polled through the scripted states until both were READY
    assert [o["endpoint"] for o in out] == ["http://44.1.2.3:30001"] * 2
    assert {o["service_name"] for o in out} == {f.service} and out[0]["status"] == "running"
    r = f.p.read(REPLICA, f.addr(1), out[1])
    assert r.exists and r.healthy and r.attributes["endpoint"] == "http://44.1.2.3:30001"


def test_autoscaling_policy_becomes_a_replica_policy(fleet):
    fleet.create(1, service=dict(SVC, min_replicas=1, max_replicas=4, target_qps_per_replica=2.5))
    spec = fleet.fake.calls("serve.up")[0]["task"]["service"]
    assert (spec["min_replicas"], spec["max_replicas"], spec["target_qps_per_replica"]) == (1, 4, 2.5)
    assert policy_replicas(spec["policy"]) == 1


def test_plan_revision_change_is_in_place_and_update_calls_serve_update(fleet, next_run):
    f, (later, _) = fleet, next_run
    out = f.create(2)
    new = [f.slot(i, model_revision="r2") for i in range(2)]
    for prior, desired in zip(out, new):
        p = f.p.plan(REPLICA, prior, desired)
        assert p.requires_replace == [] and p.attributes["model_revision"] == "r2"
    assert f.p.plan(REPLICA, out[1], f.slot(1, placement="cluster")).requires_replace  # leaving SkyServe replaces
    got = [later.update(REPLICA, f.addr(i), out[i], new[i]) for i in (1, 0)]  # the count read back from status
    upd = f.fake.calls("serve.update")
    assert len(upd) == 1 and upd[0]["mode"].endswith("UpdateMode.BLUE_GREEN")  # only the owner talks to SkyServe
    assert "--revision r2" in upd[0]["task"]["run"] and upd[0]["task"]["service"]["min_replicas"] == 2
    assert got[1]["service_version"] == 2 and got[0]["model_revision"] == "r2"
    later.update(REPLICA, f.addr(0), got[1], dict(got[1], labels={"team": "a"}))
    assert len(f.fake.calls("serve.update")) == 1  # labels stay in state


def test_scale_up_and_down_keep_the_replica_count(fleet, next_run):
    f, (later, later_fake) = fleet, next_run
    out = f.create(2)
    third = later.create(REPLICA, f.addr(2), later.prepare_create(REPLICA, f.addr(2), f.slot(2)))
    assert f.fake.calls("serve.update")[-1]["task"]["service"]["min_replicas"] == 3
    assert third["endpoint"] == out[0]["endpoint"]
    later.delete(REPLICA, f.addr(2), third)
    assert f.fake.calls("serve.update")[-1]["task"]["service"]["min_replicas"] == 2
    assert not later.read(REPLICA, f.addr(2), third).exists  # slot 2 is no longer part of the service
    later.delete(REPLICA, f.addr(1), out[1])
    later.delete(REPLICA, f.addr(0), out[0])
    assert f.fake.calls("serve.down") and not f.services()
    assert not later.read(REPLICA, f.addr(0), out[0]).exists
    later.delete(REPLICA, f.addr(0), out[0])  # already gone: success
    later_fake.send(controller_down=True)  # no controller: no services (ClusterNotUpError)
    assert not later.read(REPLICA, f.addr(0), out[0]).exists


@pytest.mark.parametrize("status, replicas, shown", [
    ("FAILED", ["FAILED_INITIAL_DELAY", "FAILED_PROBING"], "FAILED_PROBING"),
    ("NO_REPLICA", [], "no replicas"),
    ("CONTROLLER_FAILED", [], "CONTROLLER_FAILED"),
])
def test_failed_service_is_a_clear_provider_error(fleet, status, replicas, shown):
    f = fleet
    f.fake.send(script={f.service: [[status, replicas]]})
    with pytest.raises(ProviderError, match=f"{f.service} failed: .*{shown}") as info:
        f.create(1)
    assert "sky serve logs" in str(info.value)
    r = f.p.read(REPLICA, f.addr(0), f.slot(0, service_name=f.service))
    assert r.exists and r.healthy is False and status in r.detail


def test_skypilot_exceptions_are_mapped(fleet):
    f = fleet
    f.fake.fail_next("ApiServerConnectionError", "http://127.0.0.1:46580")
    with pytest.raises(TransientProviderError):  # raised once: the engine retries
        f.create(1)
    out = f.create(1)
    assert out[0]["status"] == "running"
    f.fake.fail_next("ResourcesUnavailableError", "no H100 anywhere", on="serve.up")
    with pytest.raises(NoCapacity, match="no H100 anywhere"):
        f.p.create_canary(f.addr(0), dict(f.slot(0, model_revision="r2"), canary=True), 1)
    f.fake.fail_next("RuntimeError", "Service 'x' does not exist.", on="serve.update")
    with pytest.raises(ProviderError, match="serve.update failed: RuntimeError"):
        f.p.update(REPLICA, f.addr(0), out[0], f.slot(0, model_revision="r3", service_name=f.service))
    f.fake.send(drop_services=True)
    with pytest.raises(ResourceNotFound):
        f.p.update(REPLICA, f.addr(0), out[0], f.slot(0, model_revision="r9", service_name=f.service))


def test_invalid_service_settings_fail_at_plan_time(fleet):
    f = fleet
    bad = f.p.plan(REPLICA, None, f.slot(0, service=dict(SVC, load_balancing_policy="fastest")))
    assert bad.diagnostics and "invalid SkyServe service settings" in bad.diagnostics[0].summary
    ok = f.p.plan(REPLICA, None, f.slot(0))
    assert ok.attributes["service_name"] == f.service
    assert not [d for d in ok.diagnostics if d.severity == "error"]


def test_only_the_owner_slots_new_version_redeploys(fleet):
    f = fleet
    out = f.create(2)
    assert f.p.plan(REPLICA, out[0], f.slot(0, model_revision="r2")).redeploys
    assert not f.p.plan(REPLICA, out[1], f.slot(1, model_revision="r2")).redeploys  # slot 1 follows slot 0
    assert not f.p.plan(REPLICA, out[0], f.slot(0, labels={"team": "a"})).redeploys  # state only


def test_a_canary_is_a_separate_service_and_deleting_it_leaves_the_primary(fleet):
    f = fleet
    out = f.create(2)
    assert f.p.service_workers(f.addr(0), out[0]) == ["http://10.0.0.1:30000", "http://10.0.0.2:30000"]
    desired = dict(f.slot(0, model_revision="r2", service=dict(SVC, min_replicas=1, max_replicas=4)),
                   service_name=f.service, canary=True)
    canary = f.p.create_canary(f.addr(0), desired, 2)
    (up,) = [c for c in f.fake.calls("serve.up") if c["service"] == f.canary]
    spec = up["task"]["service"]
    assert (spec["min_replicas"], spec["max_replicas"]) == (2, None)  # fixed size: no autoscaling of a canary
    assert "--revision r2" in up["task"]["run"]
    assert canary["service_name"] == f.canary and canary["status"] == "running"
    assert canary["workers"] == ["http://10.1.0.1:30000", "http://10.1.0.2:30000"]
    assert f.p.read(REPLICA, f.addr(0), canary).exists
    # a canary recorded before its result (an apply that died) still names the canary, not the primary
    f.p.delete(REPLICA, f.addr(0), desired)
    assert f.fake.calls("serve.down")[-1]["services"] == [f.canary]
    assert f.services() == {f.service} and f.p.read(REPLICA, f.addr(0), out[0]).exists


def test_a_leftover_canary_service_is_replaced(fleet):
    f = fleet
    f.create(1)
    desired = dict(f.slot(0, model_revision="r2"), canary=True)
    f.p.create_canary(f.addr(0), desired, 1)
    f.p.create_canary(f.addr(0), dict(desired, model_revision="r3"), 1)
    assert [c["call"] for c in f.fake.calls() if c["call"] in ("serve.up", "serve.down")
            and f.canary in (c.get("service"), *c.get("services", []))] == ["serve.up", "serve.down", "serve.up"]
    assert "--revision r3" in f.fake.calls("serve.up")[-1]["task"]["run"]


def test_a_new_update_mode_alone_redeploys_nothing(fleet):
    f = fleet
    out = f.create(1)
    changed = dict(f.slot(0), service=dict(SVC, update_mode="rolling"))
    assert not f.p.plan(REPLICA, out[0], changed).redeploys
    f.p.update(REPLICA, f.addr(0), out[0], changed)
    assert not f.fake.calls("serve.update")  # recorded in state only


def test_a_skyserve_service_no_state_records_is_listed_as_an_orphan_and_taken_down(tmp_path, sky_module_env):
    """A service's replicas carry the state's lineage label (SkyServe keeps them on each replica's
    handle): `list_instances` finds the service no state records; `delete_instance` is `serve down`."""
    from infraplan.drift.orphans import orphan_findings
    from infraplan.providers.contract import ProviderContext
    from infraplan.state.store import ResourceRecord, StateSnapshot
    from infraplan_providers.skypilot.provider import SkyPilotProvider

    from helpers.skypilot_plugin import FakeSkyControl

    lineage = "ab" * 16
    fake = FakeSkyControl(tmp_path, "orphans")
    ctx = ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path / "rt",
                          name="sky", settings=SETTINGS, lineage=lineage)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**sky_module_env, **fake.environment()}.items():
            mp.setenv(k, v)
        p = RemoteProvider.connect(SkyPilotProvider, ctx, "skypilot")
    try:
        kept = Fleet("kept", p, fake)
        lost = Fleet("lost", p, fake)
        out = kept.create(1)
        lost.create(1)  # its state records were lost
        listed = {i.instance_id: i for i in p.list_instances()}
        assert set(listed) == {kept.service, lost.service}
        assert listed[lost.service].detail["kind"] == "skyserve service"
        assert listed[lost.service].detail["address"]  # the address label names the fleet it was for
        rec = ResourceRecord("fleet.kept[0]", "", "replica", "sky", "ready", out[0], None, [], None, "t", "t")
        snap = StateSnapshot(lineage, 3, [rec])

        class One:  # the providers the drift run asks: just this worker
            def get(self, key):
                return p

        findings, n, errors = orphan_findings(snap, One(), {"sky"}, [], timeout=60)
        assert errors == [] and [(f.kind, f.instance_id) for f in findings] == [("orphaned", lost.service)]
        p.delete_instance(listed[lost.service])
        assert lost.service not in lost.services() and kept.service in kept.services()
    finally:
        p.close()

"""A canary of a fleet served as one service (SkyServe's shape): a separate canary service
behind the router, promoted by an in-place update of the service, or rolled back.

The provider here keeps each "service" as real sim processes (the local provider's) behind
a load-balancer URL; that is the narrow contract the engine uses (`service_workers`,
`create_canary`, `update`, `delete`). The SkyPilot provider's side of it is tested against
the faked SDK in tests/skypilot*.
"""

from __future__ import annotations

import threading

import pytest

from infraplan.errors import ProviderError
from infraplan.models.config import RolloutBlock
from infraplan.plan.model import Change
from infraplan.providers.contract import Provider, ProviderContext, ReadResult, RunsServices
from infraplan.rollout import RolloutContext, RolloutFailed
from infraplan.rollout.strategies import run_rollout
from infraplan.rollout.traffic import MemorySwitch
from infraplan.state import StateStore
from infraplan_providers.local.provider import LocalProvider
from infraplan.serving.sglang_client import SGLangClient
from infraplan.models.kinds import ResourceKind

from helpers.rollout import FLEET, Load, replica_attrs  # noqa: E402

PRIMARY, CANARY = "svc-chat", "svc-chat-canary"
LB = "http://svc-chat.lb.invalid"  # the service's load balancer: `SimServices.resolve` stands in for it


class SimServices(RunsServices, Provider):
    """Fleets served as services; a service is N sim processes."""

    name = "simservice"
    computed = frozenset({"service_name", "endpoint", "status", "workers"})

    def __init__(self, tmp_path, store):
        super().__init__(ProviderContext(project_dir=tmp_path, state_path=tmp_path / "state.db",
                                         runtime_dir=tmp_path / "run", name="svc"))
        self.local = LocalProvider(ProviderContext(
            project_dir=tmp_path, state_path=tmp_path / "state.db", runtime_dir=tmp_path / "run",
            settings={"ready_timeout_s": 20, "stop_timeout_s": 2}, name="local"))
        self.store = store
        self.services: dict[str, list[tuple[str, dict]]] = {}
        self.calls: list[tuple] = []
        self.deposed_at_create: list[str] = []
        self.fail_canary = False
        self.lock = threading.Lock()

    def _name(self, attrs: dict) -> str:
        return CANARY if attrs.get("canary") else PRIMARY

    def up(self, name: str, attrs: dict, n: int) -> None:
        reps = []
        for i in range(n):
            addr = f"{name}[{i}]"
            local = {k: v for k, v in attrs.items() if k in replica_attrs(0)}
            a = self.local.prepare_create(ResourceKind.REPLICA, addr, {**local, "index": i, "port": None})
            reps.append((addr, self.local.create(ResourceKind.REPLICA, addr, a)))
        with self.lock:
            self.services[name] = reps

    def down(self, name: str) -> None:
        with self.lock:
            reps = self.services.pop(name, [])
        for addr, a in reps:
            self.local.delete(ResourceKind.REPLICA, addr, a)

    def service_workers(self, address, attributes):
        with self.lock:
            return [a["endpoint"] for _, a in self.services.get(self._name(attributes), [])]

    def create_canary(self, address, attributes, replicas):
        self.calls.append(("create_canary", attributes["model_revision"], replicas))
        self.deposed_at_create = [r.deposed for r in self.store.resources() if r.deposed]
        if self.fail_canary:
            raise ProviderError("no capacity for the canary service")
        self.up(CANARY, attributes, replicas)
        return {**attributes, "service_name": CANARY, "endpoint": "http://svc-chat-canary.lb.invalid",
                "workers": self.service_workers(address, attributes)}

    def update(self, kind, address, prior, desired):
        self.calls.append(("update", address, desired["model_revision"]))
        if desired.get("index") == 0:  # the owner redeploys the service (SkyServe: a rolling update)
            n = len(self.services.get(PRIMARY, []))
            self.down(PRIMARY)
            self.up(PRIMARY, desired, n)
        return {**prior, **desired, "service_name": PRIMARY, "endpoint": LB}

    def delete(self, kind, address, attributes):
        self.calls.append(("delete", self._name(attributes)))
        self.down(self._name(attributes))

    def read(self, kind, address, attributes):
        return ReadResult(exists=self._name(attributes) in self.services)

    def resolve(self, url: str) -> list[str]:
        return self.service_workers("", {}) if url == LB else [url]


class ServiceFleet:
    def __init__(self, tmp_path, n: int):
        self.n = n
        self.store = StateStore(tmp_path / "state.db")
        self.provider = SimServices(tmp_path, self.store)
        self.provider.up(PRIMARY, replica_attrs(0), n)
        for i in range(n):
            self.store.put(f"{FLEET}[{i}]", kind="replica", provider="svc", dependencies=["model.m"],
                           attributes=self.slot(i, "r1"))
        self.switch = MemorySwitch([LB])
        self.events: list[dict] = []

    def slot(self, i: int, revision: str, **sim) -> dict:
        return {**replica_attrs(i, revision, **sim), "placement": "service", "service_name": PRIMARY,
                "endpoint": LB}

    def changes(self, revision: str = "r2", **sim) -> list[Change]:
        return [Change(address=f"{FLEET}[{i}]", kind="replica", action="update", provider="svc",
                       provider_type="simservice", before=self.store.get(f"{FLEET}[{i}]").attributes,
                       after=self.slot(i, revision, **sim), dependencies=["model.m"], fleet=FLEET, rolls_out=True)
                for i in range(self.n)]

    def context(self, spec: RolloutBlock, changes: list[Change]) -> RolloutContext:
        return RolloutContext(store=self.store, provider=self.provider, fleet=FLEET, spec=spec, changes=changes,
                              emit=self.events.append, resolve=lambda a, u: a, traffic=self.switch,
                              stop=threading.Event())

    def recorded_revisions(self) -> list[str]:
        return [self.store.get(f"{FLEET}[{i}]").attributes["model_revision"] for i in range(self.n)]

    def served_revisions(self, name: str = PRIMARY) -> list[str]:
        out = []
        for url in self.provider.service_workers("", {"canary": name == CANARY}):
            with SGLangClient(url) as c:
                out.append(c.revision())
        return out


@pytest.fixture
def service_fleet(tmp_path, leftover_servers):
    made: list[ServiceFleet] = []

    def make(n: int) -> ServiceFleet:
        made.append(ServiceFleet(tmp_path / f"f{len(made)}", n))
        return made[-1]

    yield make
    for f in made:
        for name in list(f.provider.services):
            f.provider.down(name)
        f.store.close()
    assert not leftover_servers()


def _canary(steps=(50, 100), **analysis) -> RolloutBlock:
    return RolloutBlock(strategy="canary", steps=list(steps), readiness_timeout_s=10,
                        analysis={"window_s": 1.0, "min_requests": 5, "load_concurrency": 4, **analysis})


def test_a_passing_canary_is_promoted_by_updating_the_service_and_no_request_fails(service_fleet):
    fleet = service_fleet(2)
    spec = _canary(gates=[{"metric": "error_rate", "max": 0.05}])
    with Load(fleet.switch, fleet.provider.resolve) as load:
        result = run_rollout(fleet.context(spec, fleet.changes("r2")))
    assert not result.rolled_back
    assert load.sent > 10 and load.failed == []
    # one canary service of as many replicas, then the owner slot's update redeploys the service
    assert fleet.provider.calls[0] == ("create_canary", "r2", 2)
    assert [c for c in fleet.provider.calls if c[0] == "update"] == [
        ("update", f"{FLEET}[0]", "r2"), ("update", f"{FLEET}[1]", "r2")]
    assert fleet.provider.calls[-1] == ("delete", CANARY)
    assert fleet.provider.deposed_at_create, "the canary was in state before it was asked for"
    # traffic: load balancer -> the service's replicas -> half canary -> all canary -> load balancer
    hist = fleet.switch.history
    assert hist[0] == [LB] and fleet.switch.held() == [LB]
    canary_urls = set(result.steps[1]["workers"])
    assert any(len(h) == 4 and len(canary_urls & set(h)) == 2 for h in hist)  # 50%: 2 canary + 2 service
    assert any(set(h) == canary_urls for h in hist)  # 100%: the canary alone, while the service updates
    assert [round(s["share"]) for s in result.steps if s["step"] == "weight"] == [50, 100]
    assert fleet.recorded_revisions() == ["r2", "r2"] and fleet.served_revisions() == ["r2", "r2"]
    assert CANARY not in fleet.provider.services
    assert not [r for r in fleet.store.resources() if r.deposed] and not fleet.store.rollbacks()
    steps = [e.details["step"] for e in reversed(fleet.store.audit_log()) if e.event == "rollout-step"]
    assert steps[:2] == ["start", "canary-service"] and "promote" in steps and steps[-1] == "done"


def test_a_failing_canary_is_rolled_back_at_its_first_step_and_the_service_is_never_touched(service_fleet):
    fleet = service_fleet(2)
    spec = _canary(steps=(25, 50, 100), gates=[{"metric": "error_rate", "max": 0.05}])
    with Load(fleet.switch, fleet.provider.resolve) as load, pytest.raises(RolloutFailed) as info:
        run_rollout(fleet.context(spec, fleet.changes("r2", error_rate=0.5)))
    ev = info.value.evidence
    assert ev["canary"]["error_rate"] > 0.05 and ev["baseline"]["error_rate"] == 0
    assert [s["target"] for s in info.value.result.steps if s["step"] == "weight"] == [25]
    canary_urls = set(info.value.result.steps[1]["workers"])
    assert load.failed and all(url in canary_urls for url, _ in load.failed)  # only the canary failed requests
    assert not [c for c in fleet.provider.calls if c[0] == "update"]  # never promoted
    assert fleet.provider.calls[-1] == ("delete", CANARY) and CANARY not in fleet.provider.services
    assert fleet.switch.held() == [LB]
    assert fleet.recorded_revisions() == ["r1", "r1"] and fleet.served_revisions() == ["r1", "r1"]
    assert not [r for r in fleet.store.resources() if r.deposed]
    (rb,) = fleet.store.rollbacks(FLEET)
    assert "error_rate" in rb["reason"]


def test_a_golden_failure_stops_before_the_canary_takes_traffic(service_fleet):
    fleet = service_fleet(1)
    spec = RolloutBlock(strategy="canary", steps=[50, 100], readiness_timeout_s=10,
                        golden_prompts=[{"prompt": "answer in JSON", "max_tokens": 6, "json_valid": True}])
    with pytest.raises(RolloutFailed, match="golden"):
        run_rollout(fleet.context(spec, fleet.changes("r2")))
    assert all(h == [LB] for h in fleet.switch.history)  # not even the service's replicas were routed
    assert CANARY not in fleet.provider.services and fleet.recorded_revisions() == ["r1"]


def test_a_canary_service_that_cannot_start_leaves_nothing_behind(service_fleet):
    fleet = service_fleet(1)
    fleet.provider.fail_canary = True
    with pytest.raises(RolloutFailed, match="canary service did not start: no capacity"):
        run_rollout(fleet.context(_canary(), fleet.changes("r2")))
    assert fleet.provider.calls[-1] == ("delete", CANARY)  # whatever may have started is torn down
    assert not [r for r in fleet.store.resources() if r.deposed]
    assert fleet.switch.held() == [LB] and fleet.recorded_revisions() == ["r1"]


@pytest.mark.parametrize("strategy, grouped", [("canary", True), ("rolling", False)])
def test_only_a_service_canary_turns_the_slot_updates_into_one_rollout_step(strategy, grouped):
    from infraplan.apply.executor import build_apply_graph
    from infraplan.plan.model import Plan

    slots = [Change(address=f"fleet.a[{i}]", kind="replica", action="update", provider="sky", fleet="fleet.a",
                    dependencies=["model.m"], rolls_out=True) for i in range(2)]
    fleet = Change(address="fleet.a", kind="fleet", action="update", provider="sky",
                   after={"rollout": {"strategy": strategy}}, dependencies=["fleet.a[0]", "fleet.a[1]"])
    g = build_apply_graph(Plan(changes=[*slots, fleet], lineage="l", serial=1, config_digest="d", config_path="."))
    nodes = {g.nodes[n]["node"].op for n in g}
    if grouped:
        assert nodes == {"rollout", "write"} and g.has_edge("rollout:fleet.a", "write:fleet.a")
        assert [c.address for c in g.nodes["rollout:fleet.a"]["node"].group] == ["fleet.a[0]", "fleet.a[1]"]
    else:  # SkyServe rolls it out itself: slot 0's update is `sky serve update`
        assert nodes == {"update", "write"}


def test_other_fleets_workers_in_the_same_router_are_left_alone(service_fleet):
    fleet = service_fleet(1)
    other = "http://other-fleet.invalid:1"
    fleet.switch = MemorySwitch([LB, other])
    run_rollout(fleet.context(_canary(), fleet.changes("r2")))
    assert all(other in h for h in fleet.switch.history)
    assert sorted(fleet.switch.held()) == sorted([LB, other])

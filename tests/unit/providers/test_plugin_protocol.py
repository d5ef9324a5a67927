"""The provider contract across the plugin boundary: capabilities, the handshake, JSON-RPC, time limits.

Real worker processes (`plugin_venv`: this venv as the plugin's), with their stdin and stdout
copied to files by a shell `tee` in front of the interpreter, so the tests read the wire itself.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from infraplan.errors import ApplyError, ProviderTimeout, ProviderUnavailable, ReadTimeout, TransientProviderError
from infraplan.models.config import PluginTimeouts, ProviderBlock, RolloutBlock
from infraplan.models.kinds import ResourceKind
from infraplan.plan.model import Change
from infraplan.providers.contract import ListsInstances, Provider, ProviderContext, RunsServices
from infraplan.providers.plugin.host import RemoteProvider
from infraplan.providers.registry import ProviderSet
from infraplan.util.retry import call_with_retries
from infraplan_providers.local.provider import LocalProvider
from infraplan_providers.null.provider import NullProvider
from infraplan_providers.skypilot.provider import SkyPilotProvider

from helpers.timing import within

REPLICA, ROUTER = ResourceKind.REPLICA, ResourceKind.ROUTER
TEE = """#!/bin/sh
d=$(dirname "$0")
tee -a "$d/../wire-in.jsonl" | "$d/python-real" "$@" | tee -a "$d/../wire-out.jsonl"
"""


@pytest.fixture
def wired(plugin_venv):
    """``install(NAME)``: a plugin whose traffic is copied to ``wire-in.jsonl`` / ``wire-out.jsonl``."""

    def install(name: str) -> Path:
        target = plugin_venv(name)
        python = target / "bin" / "python"
        python.rename(target / "bin" / "python-real")
        python.write_text(TEE)
        python.chmod(0o755)
        return target

    return install


def wire(target: Path, side: str) -> list[dict]:
    path = target / f"wire-{side}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def on_wire(target: Path, side: str, match, wait: float) -> dict:
    """The first message on one side of the wire that `match`es, waiting up to `wait` s (tee is a copy)."""
    deadline = time.monotonic() + wait
    while True:
        found = [m for m in wire(target, side) if match(m)]
        if found or time.monotonic() > deadline:
            assert found, f"no such message on the wire ({side}) within {wait:g}s"
            return found[0]
        time.sleep(0.05)


def context(tmp_path: Path, **settings) -> ProviderContext:
    return ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path / "rt",
                           settings=settings, name="p")


def preload(tmp_path: Path, monkeypatch, code: str) -> None:
    script = tmp_path / "preload.py"
    script.write_text(code)
    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(script))


SIM = {"fleet": "fleet.chat", "index": 0, "engine": "sim", "model": "model.m", "model_source": "hf://org/m",
       "model_revision": "r1", "served_name": "m", "args": {}, "env": {}, "accelerators": None, "port": None,
       "labels": {}, "region": None, "cloud": None,
       "sim": {"ttft_ms": 1.0, "tpot_ms": 1.0, "error_rate": 0.0, "startup_s": 0.0, "seed": 0}}


# -- capabilities -------------------------------------------------------------------
def test_lists_instances_survives_the_plugin_boundary(tmp_path, plugin_venv, leftover_servers):
    """A local server no state knows is listed and stopped through the plugin (orphan discovery)."""
    plugin_venv("local")
    p = RemoteProvider.connect(LocalProvider, context(tmp_path, ready_timeout_s=30, stop_timeout_s=2), "local")
    try:
        assert isinstance(p, ListsInstances) and not isinstance(p, RunsServices)
        made = p.create(REPLICA, "fleet.chat[0]", p.prepare_create(REPLICA, "fleet.chat[0]", dict(SIM)))
        listed = p.list_instances()
        assert [(i.instance_id, i.endpoint, i.detail["pid"]) for i in listed] == \
            [(made["instance_id"], made["endpoint"], made["pid"])]
        p.delete_instance(listed[0])
        assert p.list_instances() == []
    finally:
        p.close()
    assert not leftover_servers()


def test_runs_services_and_lists_instances_survive_the_plugin_boundary(tmp_path, plugin_venv):
    plugin_venv("skypilot")
    p = RemoteProvider.connect(SkyPilotProvider, context(tmp_path), "skypilot")
    try:
        assert isinstance(p, RunsServices) and isinstance(p, ListsInstances)
        assert p.list_instances() == []  # no state lineage yet: nothing is this state's, no SDK call
        assert p.service_workers("fleet.chat[0]", {"placement": "cluster"}) == []  # no service: no SDK call
        assert p.computed == SkyPilotProvider.computed and p.updatable == SkyPilotProvider.updatable
    finally:
        p.close()


def test_a_provider_without_capabilities_has_none_remotely(tmp_path, plugin_venv):
    plugin_venv("null")
    p = RemoteProvider.connect(NullProvider, context(tmp_path), "null")
    try:
        assert type(p) is RemoteProvider and not isinstance(p, (ListsInstances, RunsServices))
    finally:
        p.close()


def test_the_registry_hands_out_plugin_providers_with_their_capabilities(tmp_path, plugin_venv):
    plugin_venv("local")
    providers = ProviderSet({"l": ProviderBlock(type="local", isolation="plugin")}, project_dir=tmp_path,
                            state_path=tmp_path / "s.db")
    try:
        p = providers.get("l")
        assert isinstance(p, RemoteProvider) and isinstance(p, ListsInstances)
    finally:
        providers.close()


# -- the handshake and the wire -------------------------------------------------------
def test_a_worker_of_another_protocol_version_is_refused_in_one_line(tmp_path, wired, monkeypatch):
    target = wired("null")
    preload(tmp_path, monkeypatch, "from infraplan.providers.plugin import protocol\nprotocol.PROTOCOL_VERSION = 99\n")
    with pytest.raises(ProviderUnavailable) as info:
        RemoteProvider.connect(NullProvider, context(tmp_path), "null")
    msg = str(info.value)
    assert "\n" not in msg
    assert "protocol version 99" in msg and "version 2" in msg and "`infraplan plugins install null`" in msg
    assert [m["method"] for m in wire(target, "in")] == ["initialize"]  # nothing else was asked


def test_messages_are_json_rpc_2_and_name_the_kind(tmp_path, wired, monkeypatch):
    target = wired("null")
    preload(tmp_path, monkeypatch, "from infraplan_providers.null import provider\n"
                                   "orig = provider.NullProvider.create\n"
                                   "def create(self, kind, address, attrs):\n"
                                   "    return dict(orig(self, kind, address, attrs), seen=repr(kind))\n"
                                   "provider.NullProvider.create = create\n")
    p = RemoteProvider.connect(NullProvider, context(tmp_path, fail_addresses=["router.bad"]), "null")
    try:
        made = p.create(ROUTER, "router.front", {"policy": "random"})
        assert made["seen"] == repr(ROUTER)  # a ResourceKind again in the worker
        p.read(REPLICA, "fleet.a[0]", {"id": "x"})
        with pytest.raises(Exception, match="fail_addresses"):
            p.create(ROUTER, "router.bad", {})
    finally:
        p.close()
    sent, got = wire(target, "in"), wire(target, "out")
    assert all(m["jsonrpc"] == "2.0" and set(m) == {"jsonrpc", "id", "method", "params"} for m in sent)
    assert sent[0]["method"] == "initialize" and sent[0]["params"]["protocolVersion"] == 2
    assert got[0]["result"]["protocolVersion"] == 2 and got[0]["result"]["provider"]["capabilities"] == []
    create = next(m for m in sent if m["method"] == "create")
    assert create["params"] == {"kind": "router", "address": "router.front", "attributes": {"policy": "random"}}
    assert next(m for m in sent if m["method"] == "read")["params"]["kind"] == "replica"
    by_id = {m["id"]: m for m in got}
    assert all(m["jsonrpc"] == "2.0" and ("result" in m) != ("error" in m) for m in got)
    failed = by_id[[m for m in sent if m["method"] == "create"][1]["id"]]
    assert failed["error"]["code"] == -32000 and "fail_addresses" in failed["error"]["message"]
    assert failed["error"]["data"]["type"] == "infraplan.errors:ProviderError"


# -- time limits and cancellation -----------------------------------------------------
SLOW = ("import time\n"
        "from infraplan_providers.null import provider\n"
        "def slow(self, kind, address, attrs):\n"
        "    time.sleep(30)\n"
        "    return dict(attrs)\n"
        "provider.NullProvider.create = slow\n"
        "provider.NullProvider.read = slow\n")


def test_a_hanging_create_is_cancelled_within_its_limit_and_not_sent_again(tmp_path, wired, monkeypatch):
    from infraplan.apply.executor import Executor

    target = wired("null")
    preload(tmp_path, monkeypatch, SLOW)
    p = RemoteProvider.connect(NullProvider, context(tmp_path), "null")
    p.process.timeouts.update(create=0.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(ProviderTimeout, match="did not answer create within 0.5s.*what it did is unknown") as info:
            Executor(store=None, providers=None, retries=3)._call(("create", p, REPLICA, "fleet.a[0]", {}))
        assert time.monotonic() - t0 < within(1.5)
        assert not isinstance(info.value, TransientProviderError)
        on_wire(target, "in", lambda m: m.get("method") == "$/cancelRequest", within(1.0))  # all of it copied
        creates = [m for m in wire(target, "in") if m.get("method") == "create"]
        assert len(creates) == 1  # a create that may have happened is not submitted again
        cancel = on_wire(target, "in", lambda m: m.get("method") == "$/cancelRequest", within(1.0))
        assert cancel == {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": creates[0]["id"]}}
        # the worker answers the cancel at once, long before the call itself ends (30 s)
        answer = on_wire(target, "out", lambda m: m.get("id") == creates[0]["id"], within(1.0))
        assert answer["error"]["code"] == -32800
        assert p.validate_settings() == []  # the worker still serves
    finally:
        p.close()


def test_a_hanging_read_times_out_as_transient_and_may_be_asked_again(tmp_path, wired, monkeypatch):
    import tenacity

    monkeypatch.setattr(tenacity.nap, "sleep", lambda _s: None)
    target = wired("null")
    preload(tmp_path, monkeypatch, SLOW)
    timeouts = PluginTimeouts(read="0.3s")
    p = RemoteProvider.connect(NullProvider, context(tmp_path), "null", timeouts)
    try:
        with pytest.raises(ReadTimeout, match="did not answer read within 0.3s"):
            call_with_retries(lambda: p.read(REPLICA, "fleet.a[0]", {}), retry_on=TransientProviderError)
    finally:
        p.close()
    assert [m["method"] for m in wire(target, "in")].count("read") == 3


def test_closing_does_not_wait_for_a_cancelled_call(tmp_path, plugin_venv, monkeypatch):
    plugin_venv("null")
    preload(tmp_path, monkeypatch, SLOW)
    p = RemoteProvider.connect(NullProvider, context(tmp_path), "null")
    p.process.timeouts.update(create=0.3)
    with pytest.raises(ProviderTimeout):
        p.create(REPLICA, "fleet.a[0]", {})
    t0 = time.monotonic()
    p.close()
    assert time.monotonic() - t0 < within(2.0)
    assert p.process._proc is None


# -- the kind in every call, and RunsServices -----------------------------------------
class Recording(NullProvider):
    """The null provider, recording each call's method, kind and address."""

    name = "recording"
    calls: list[tuple[str, object, str]] = []
    lock = threading.Lock()

    def _note(self, method, kind, address=""):
        with self.lock:
            type(self).calls.append((method, kind, address))

    def plan(self, kind, prior, desired):
        self._note("plan", kind, str(desired.get("fleet") or "router"))
        return super().plan(kind, prior, desired)

    def estimate(self, kind, attributes):
        self._note("estimate", kind)
        return None

    def prepare_create(self, kind, address, attributes):
        self._note("prepare_create", kind, address)
        return super().prepare_create(kind, address, attributes)

    def create(self, kind, address, attributes):
        self._note("create", kind, address)
        return super().create(kind, address, attributes)

    def read(self, kind, address, attributes):
        self._note("read", kind, address)
        return super().read(kind, address, attributes)

    def update(self, kind, address, prior, desired):
        self._note("update", kind, address)
        return super().update(kind, address, prior, desired)

    def delete(self, kind, address, attributes):
        self._note("delete", kind, address)
        return super().delete(kind, address, attributes)


CONFIG = """\
provider:
  rec: {}
model:
  m: {source: hf://org/m, revision: r1}
fleet:
  web: {model: model.m, provider: rec, replicas: 2, labels: {team: LABEL}}
router:
  front: {provider: rec, fleets: [fleet.web]}
"""


def test_every_provider_call_names_the_kind(tmp_path, monkeypatch):
    from infraplan.plan.planner import PlanOptions
    from infraplan.providers import registry
    from infraplan.workspace import Workspace

    real = registry.load_provider_class
    monkeypatch.setattr(registry, "load_provider_class", lambda name: Recording if name == "rec" else real(name))
    Recording.calls = []
    (tmp_path / "main.yaml").write_text(CONFIG.replace("LABEL", "a"))
    ws = Workspace(tmp_path, env={})
    assert ws.apply(ws.plan()).ok
    (tmp_path / "main.yaml").write_text(CONFIG.replace("LABEL", "b"))
    ws = Workspace(tmp_path, env={})
    assert ws.apply(ws.plan()).ok  # refresh reads, labels update in place
    assert Workspace(tmp_path, env={}).apply(Workspace(tmp_path, env={}).plan(PlanOptions(destroy=True))).ok
    calls = Recording.calls
    assert {m for m, _, _ in calls} == {"plan", "estimate", "prepare_create", "create", "read", "update", "delete"}
    assert all(isinstance(kind, ResourceKind) for _, kind, _ in calls)
    by_address = {(m, a): k for m, k, a in calls if a}
    assert by_address[("create", "router.front")] == ROUTER and by_address[("read", "router.front")] == ROUTER
    assert by_address[("delete", "router.front")] == ROUTER
    for i in range(2):
        assert {by_address[(m, f"fleet.web[{i}]")] for m in ("create", "read", "update", "delete")} == {REPLICA}
    assert {k for m, k, _ in calls if m == "estimate"} == {REPLICA, ROUTER}


def test_a_canary_on_a_provider_without_services_is_a_clear_error(tmp_path):
    from infraplan.rollout import RolloutContext
    from infraplan.rollout.strategies import run_rollout
    from infraplan.rollout.traffic import MemorySwitch
    from infraplan.state import StateStore

    provider = NullProvider(context(tmp_path))
    assert not isinstance(provider, RunsServices) and not hasattr(Provider, "create_canary")
    with StateStore(tmp_path / "s.db") as store:
        store.put("fleet.web[0]", kind=REPLICA, provider="n", attributes={"fleet": "fleet.web", "index": 0,
                                                                          "model_revision": "r1"})
        change = Change(address="fleet.web[0]", kind=REPLICA, action="update", provider="n", fleet="fleet.web",
                        before={"fleet": "fleet.web", "index": 0, "model_revision": "r1"},
                        after={"fleet": "fleet.web", "index": 0, "model_revision": "r2"}, rolls_out=True)
        ctx = RolloutContext(store=store, provider=provider, fleet="fleet.web",
                             spec=RolloutBlock(strategy="canary", steps=[50, 100]), changes=[change],
                             emit=lambda e: None, resolve=lambda a, u: a, traffic=MemorySwitch([]),
                             stop=threading.Event())
        with pytest.raises(ApplyError, match=r"fleet.web: .*RunsServices.*the null provider has none") as info:
            run_rollout(ctx)
        assert "\n" not in str(info.value)
        assert store.get("fleet.web[0]").attributes["model_revision"] == "r1"  # nothing was touched

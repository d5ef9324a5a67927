"""The executor's scheduling rounds: at most `parallelism` calls at once, an intent durable
before its call starts, a result durable before anything that depends on it starts, and
an interrupt that starts nothing more."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from infraplan.errors import ApplyError
from infraplan.state import open_store
from infraplan.workspace import Workspace
from infraplan_providers.null.provider import NullProvider

FLEETS, REPLICAS, PARALLELISM = 6, 4, 10

CONFIG = """\
provider:
  bench:
    type: "null"
    settings: {latency_ms: 20}
model:
  m:
    source: hf://org/m
    revision: "aaa"
fleet:
""" + "".join(f"  f{i}:\n    provider: bench\n    model: model.m\n    replicas: {REPLICAS}\n" for i in range(FLEETS))


@pytest.fixture
def ws(tmp_path: Path, state_location: str) -> Workspace:
    (tmp_path / "main.yaml").write_text(CONFIG)
    return Workspace(tmp_path, state_path=state_location, env={})


def durable(ws: Workspace) -> dict[str, str]:
    """address -> status as another process would read it now (committed writes only)."""
    store = open_store(ws.state, readonly=True)
    try:
        return {r.address: r.status for r in store.resources(include_deposed=False)}
    finally:
        store.close()


def test_parallelism_and_durability_order(ws, monkeypatch):
    lock = threading.Lock()
    in_flight, peak, problems, called = [0], [0], [], []
    create = NullProvider.create

    def watched_create(self, kind, address, attributes):
        if durable(ws).get(address) != "creating":
            problems.append(f"{address}: call started before its intent was committed")
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            called.append(address)
        try:
            return create(self, kind, address, attributes)
        finally:
            with lock:
                in_flight[0] -= 1

    def on_event(ev):
        if ev["type"] == "done" and ev["op"] == "create" and durable(ws).get(ev["address"]) != "ready":
            problems.append(f"{ev['address']}: reported done before its result was committed")
        if ev["type"] == "start" and ev["address"].startswith("fleet.") and "[" not in ev["address"]:
            states = durable(ws)
            if any(states.get(f"{ev['address']}[{i}]") != "ready" for i in range(REPLICAS)):
                problems.append(f"{ev['address']}: written before its replicas' results were committed")

    monkeypatch.setattr(NullProvider, "create", watched_create)
    result = ws.apply(ws.plan(), parallelism=PARALLELISM, on_event=on_event)
    assert result.ok and result.added == 1 + FLEETS * (REPLICAS + 1)
    assert problems == []
    assert sorted(called) == sorted(f"fleet.f{i}[{j}]" for i in range(FLEETS) for j in range(REPLICAS))
    assert 1 <= peak[0] <= PARALLELISM
    assert set(durable(ws).values()) == {"ready"}


def test_interrupt_starts_nothing_more_and_leaves_no_intent_open(ws, monkeypatch):
    called: list[str] = []
    create = NullProvider.create

    def counted_create(self, kind, address, attributes):
        called.append(address)
        return create(self, kind, address, attributes)

    pressed: list[bool] = []

    def on_event(ev):  # one Ctrl-C while the first result is reported (on the main thread)
        if ev["type"] == "done" and ev["op"] == "create" and threading.current_thread() is threading.main_thread() \
                and not pressed:
            pressed.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(NullProvider, "create", counted_create)
    with pytest.raises(ApplyError, match="interrupted"):
        ws.apply(ws.plan(), parallelism=PARALLELISM, on_event=on_event)
    store = open_store(ws.state, readonly=True)
    replicas = {r.address: r for r in store.resources() if r.kind == "replica"}
    store.close()
    assert 0 < len(called) < FLEETS * REPLICAS
    # every call that started was recorded; every intent whose call never started is closed as failed
    assert {a for a, r in replicas.items() if r.status == "ready"} == set(called)
    not_started = {a: r for a, r in replicas.items() if a not in called}
    assert not_started  # begun (intent committed) but never started: closed, not called
    assert all(r.status == "failed" and "not started" in (r.error or "") for r in not_started.values())
    assert "creating" not in {r.status for r in replicas.values()}

    # the next apply carries out what is left
    ws2 = Workspace(ws.config_path, env={})
    assert ws2.apply(ws2.plan()).ok
    assert set(durable(ws2).values()) == {"ready"}

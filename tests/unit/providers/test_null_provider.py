"""The null provider: the provider contract without anything real, and an apply through Workspace."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from infraplan.errors import ProviderError
from infraplan.providers.contract import ProviderContext
from infraplan.providers.registry import load_provider_class
from infraplan.workspace import Workspace
from infraplan_providers.null.provider import NullProvider
from infraplan.models.kinds import ResourceKind


def make(tmp_path: Path, **settings) -> NullProvider:
    ctx = ProviderContext(project_dir=tmp_path, state_path=tmp_path / "infraplan.db",
                          runtime_dir=tmp_path / ".infraplan", settings=settings, name="bench")
    return NullProvider(ctx)


def test_registered_under_its_entry_point():
    assert load_provider_class("null") is NullProvider


def test_create_read_update_delete(tmp_path):
    p = make(tmp_path)
    attrs = {"fleet": "fleet.a", "model_revision": "abc", "labels": {"team": "x"}}
    created = p.create(ResourceKind.REPLICA, "fleet.a[0]", dict(attrs))
    assert {k: created[k] for k in attrs} == attrs
    assert len(created["id"]) == 32 and int(created["id"], 16) >= 0
    assert created["endpoint"] == "null://fleet.a[0]"
    assert p.create(ResourceKind.REPLICA, "fleet.a[1]", dict(attrs))["id"] != created["id"]

    seen = p.read(ResourceKind.REPLICA, "fleet.a[0]", created)
    assert seen.exists and seen.healthy is True
    assert seen.attributes == created

    updated = p.update(ResourceKind.REPLICA, "fleet.a[0]", created, {**attrs, "labels": {"team": "y"}, "id": "ignored"})
    assert updated["labels"] == {"team": "y"}
    assert updated["id"] == created["id"]  # computed attributes survive an update
    assert p.delete(ResourceKind.REPLICA, "fleet.a[0]", updated) is None
    assert p.delete(ResourceKind.REPLICA, "fleet.a[0]", updated) is None  # idempotent


def test_plan_replaces_on_revision_and_updates_labels(tmp_path):
    p = make(tmp_path)
    prior = p.create(ResourceKind.REPLICA, "fleet.a[0]", {"model_revision": "abc", "labels": {}})
    assert p.plan(ResourceKind.REPLICA, prior, {"model_revision": "def", "labels": {}}).requires_replace == ["model_revision"]
    plan = p.plan(ResourceKind.REPLICA, prior, {"model_revision": "abc", "labels": {"x": "1"}})
    assert plan.requires_replace == []
    assert plan.attributes["id"] == prior["id"]


def test_latency_is_honoured(tmp_path):
    p = make(tmp_path, latency_ms=40)
    for call in (lambda: p.create(ResourceKind.REPLICA, "a", {}), lambda: p.read(ResourceKind.REPLICA, "a", {}),
                 lambda: p.update(ResourceKind.REPLICA, "a", {}, {}), lambda: p.delete(ResourceKind.REPLICA, "a", {})):
        t0 = time.perf_counter()
        call()
        assert time.perf_counter() - t0 >= 0.035


def test_fail_addresses_globs(tmp_path):
    p = make(tmp_path, fail_addresses=["fleet.bad*", "fleet.x[1]"])
    with pytest.raises(ProviderError, match="fleet.bad"):
        p.create(ResourceKind.REPLICA, "fleet.bad[0]", {})
    with pytest.raises(ProviderError):
        p.create(ResourceKind.REPLICA, "fleet.x[1]", {})
    assert p.create(ResourceKind.REPLICA, "fleet.x[0]", {})["endpoint"] == "null://fleet.x[0]"  # `[1]` is literal, not a class
    assert p.create(ResourceKind.REPLICA, "fleet.x1", {})["endpoint"] == "null://fleet.x1"


def test_invalid_settings(tmp_path):
    p = make(tmp_path, latency_ms=-1, typo=True)
    diags = p.validate_settings()
    paths = {d.path for d in diags}
    assert "provider.bench.settings.latency_ms" in paths and "provider.bench.settings.typo" in paths
    with pytest.raises(ProviderError, match="settings"):
        p.create(ResourceKind.REPLICA, "a", {})
    assert make(tmp_path, latency_ms=5).validate_settings() == []


CONFIG = """\
provider:
  {block}
model:
  m:
    source: hf://org/m
    revision: "{revision}"
fleet:
  web:
    provider: {key}
    model: model.m
    replicas: 2
  bad:
    provider: {key}
    model: model.m
    replicas: {bad_replicas}
output:
  endpoints:
    value: ${{fleet.web.endpoints}}
"""


def write(tmp_path: Path, *, key: str, block: str, revision: str = "aaa", bad_replicas: int = 0,
          fail: str = "[]") -> None:
    (tmp_path / "main.yaml").write_text(
        CONFIG.format(key=key, block=textwrap.indent(block.format(fail=fail), "  ").strip(),
                      revision=revision, bad_replicas=bad_replicas))


@pytest.mark.parametrize("key,block", [
    ('"null"', '"null":\n  settings: {{fail_addresses: {fail}}}'),
    ("bench", 'bench:\n  type: "null"\n  settings: {{fail_addresses: {fail}}}'),
])
def test_apply_through_workspace(tmp_path, key, block):
    write(tmp_path, key=key, block=block)
    ws = Workspace(tmp_path, env={})
    plan = ws.plan()
    assert plan.summary()["add"] == 5  # model, two fleet aggregates, two replicas
    assert ws.apply(plan).ok

    snap = Workspace(tmp_path, env={}).snapshot()
    replicas = {r.address: r.attributes for r in snap.resources if r.kind == "replica"}
    assert set(replicas) == {"fleet.web[0]", "fleet.web[1]"}
    assert replicas["fleet.web[0]"]["endpoint"] == "null://fleet.web[0]"
    assert ws.store().outputs()["endpoints"] == ["null://fleet.web[0]", "null://fleet.web[1]"]

    assert not Workspace(tmp_path, env={}).plan().has_changes  # refresh finds everything as recorded

    write(tmp_path, key=key, block=block, revision="bbb")
    bumped = Workspace(tmp_path, env={}).plan()
    actions = {c.address: c.action for c in bumped.changes}
    assert actions["fleet.web[0]"] == actions["fleet.web[1]"] == "replace"
    old_ids = {a: replicas[a]["id"] for a in replicas}
    assert Workspace(tmp_path, env={}).apply(bumped).ok
    after = {r.address: r.attributes for r in Workspace(tmp_path, env={}).snapshot().resources if r.kind == "replica"}
    assert all(after[a]["id"] != old_ids[a] and after[a]["model_revision"] == "bbb" for a in old_ids)

    ws = Workspace(tmp_path, env={})
    from infraplan.plan.planner import PlanOptions

    assert ws.apply(ws.plan(PlanOptions(destroy=True))).ok
    assert Workspace(tmp_path, env={}).snapshot().resources == []


def test_failed_create_is_recorded(tmp_path):
    block = 'bench:\n  type: "null"\n  settings: {{fail_addresses: {fail}}}'
    write(tmp_path, key="bench", block=block, bad_replicas=1, fail='["fleet.bad*"]')
    ws = Workspace(tmp_path, env={})
    result = ws.apply(ws.plan())
    assert not result.ok
    assert any("fleet.bad[0]" in nid for nid in result.failed)
    snap = Workspace(tmp_path, env={}).snapshot()
    assert snap.get("fleet.web[0]").status == "ready"
    assert snap.get("fleet.bad[0]").status == "failed"


def test_reads_run_in_line_unless_latency_is_simulated(tmp_path):
    from infraplan.providers.contract import ProviderContext
    from infraplan_providers.null.provider import NullProvider

    def ctx(settings):
        return ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path, settings=settings)

    assert NullProvider(ctx({})).concurrent_reads is False
    assert NullProvider(ctx({"latency_ms": 5})).concurrent_reads is True

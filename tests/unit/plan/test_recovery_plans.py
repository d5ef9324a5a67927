"""Plans after something went wrong: a create that never returned, a server that runs but is
unhealthy, a server that is gone under a refresh-only plan (null provider, in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.cli import run
from infraplan.models.actions import Action
from infraplan.providers.contract import ReadResult
from infraplan.state import StateStore
from infraplan.workspace import Workspace
from infraplan_providers.null.provider import NullProvider

CONFIG = """\
model:
  m:
    source: hf://org/m
    revision: "aaa"
fleet:
  web:
    provider: "null"
    model: model.m
    replicas: 2
"""


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    (tmp_path / "main.yaml").write_text(CONFIG)
    w = Workspace(tmp_path, env={})
    assert w.apply(w.plan()).ok
    return w


def half_created(ws: Workspace, address: str) -> None:
    """`address` as a killed apply leaves it: its create intent recorded, no result (no id, no endpoint)."""
    with StateStore(ws.state_path) as s:
        rec = s.get(address)
        intent = {k: v for k, v in rec.attributes.items() if k not in NullProvider.computed}
        s.remove(address)
        s.record_intent(address, action="create", kind=rec.kind, provider=rec.provider, attributes=intent,
                        dependencies=rec.dependencies)


def changes(plan) -> dict[str, object]:
    return {c.address: c for c in plan.changes}


def test_a_create_that_never_returned_is_created_again_not_adopted(ws):
    half_created(ws, "fleet.web[1]")
    c = changes(ws.plan())["fleet.web[1]"]
    assert c.action == Action.CREATE
    assert c.reasons == ["an interrupted create left no server behind"]
    result = ws.apply(ws.plan())
    assert result.ok
    snap = ws.snapshot()
    assert snap.get("fleet.web[1]").status == "ready" and snap.get("fleet.web[1]").attributes["id"]
    assert snap.get("fleet.web").attributes["endpoints"] == ["null://fleet.web[0]", "null://fleet.web[1]"]
    assert not Workspace(ws.config_path, env={}).plan().has_changes


def test_a_read_that_only_echoes_the_record_proves_nothing(ws, monkeypatch):
    """Any provider, not only null: adoption needs a computed attribute the intent did not hold."""
    half_created(ws, "fleet.web[0]")
    monkeypatch.setattr(NullProvider, "read", lambda self, kind, address, attrs:
                        ReadResult(exists=True, attributes=dict(attrs), healthy=True))
    c = changes(ws.plan())["fleet.web[0]"]
    assert c.action == Action.CREATE
    assert "nothing null can show exists" in c.reasons[0] and "endpoint, id" in c.reasons[0]

    # a read that finds the real object (its id) adopts it
    monkeypatch.setattr(NullProvider, "read", lambda self, kind, address, attrs: ReadResult(
        exists=True, attributes={**attrs, "id": "real", "endpoint": f"null://{address}"}, healthy=True))
    c = changes(ws.plan())["fleet.web[0]"]
    assert c.action == Action.REFRESH and c.reasons == ["adopts the server an interrupted apply started"]


def test_proves_existence():
    from infraplan.plan.planner import proves_existence

    recorded = {"port": 1, "instance_id": "i"}
    assert not proves_existence(ReadResult(True, dict(recorded)), recorded, {"instance_id", "pid"})
    assert not proves_existence(ReadResult(True, {**recorded, "pid": None}), recorded, {"instance_id", "pid"})
    assert proves_existence(ReadResult(True, {**recorded, "pid": 42}), recorded, {"instance_id", "pid"})
    assert not proves_existence(ReadResult(True, {"x": 1}), {}, frozenset())


def test_an_unhealthy_replica_is_tainted_and_replaced_new_one_first(ws, monkeypatch):
    read = NullProvider.read

    def sick(self, kind, address, attrs):
        got = read(self, kind, address, attrs)
        if address == "fleet.web[1]":
            return ReadResult(exists=True, attributes=got.attributes, healthy=False, detail="/health answers 500")
        return got

    monkeypatch.setattr(NullProvider, "read", sick)
    old_id = ws.snapshot().get("fleet.web[1]").attributes["id"]
    plan = ws.plan()
    c = changes(plan)["fleet.web[1]"]
    assert c.action == Action.REPLACE and c.create_before_destroy
    assert c.reasons[0] == "replaced because it is tainted: running but not healthy (/health answers 500)"
    assert changes(plan)["fleet.web[0]"].action == Action.NOOP
    assert not any("not healthy" in d["summary"] for d in plan.diagnostics)  # a change, not only a warning
    result = ws.apply(plan)
    assert result.ok and (result.added, result.destroyed) == (1, 1)
    assert ws.snapshot().get("fleet.web[1]").attributes["id"] != old_id


def test_taint_and_untaint_commands(ws):
    db = str(ws.state_path)
    out = run("taint", "fleet.web[0]", "--state", db)
    assert out.exit_code == 0, out.output
    assert "fleet.web[0] has been marked as tainted" in out.output
    c = changes(ws.plan())["fleet.web[0]"]
    assert c.action == Action.REPLACE and "replaced because it is tainted" in c.reasons

    back = run("untaint", "fleet.web[0]", "--state", db, "--json")
    assert back.exit_code == 0 and json.loads(back.stdout) == {"untainted": "fleet.web[0]"}
    assert not ws.plan().has_changes
    events = [(a.event, a.address) for a in StateStore.open_readonly(ws.state_path).audit_log()]
    assert events[:2] == [("untaint", "fleet.web[0]"), ("taint", "fleet.web[0]")]

    for args, message in ((["taint", "fleet.web"], "fleet.web is a fleet, which no provider runs"),
                          (["taint", "fleet.nope[0]"], "no resource fleet.nope[0] in state"),
                          (["untaint", "fleet.web[1]"], "fleet.web[1] is not tainted")):
        bad = run(*args, "--state", db)
        assert bad.exit_code == 1
        assert bad.stderr.strip().splitlines() == [f"Error: {bad.stderr.strip()[7:]}"] and message in bad.stderr
    assert StateStore.open_readonly(ws.state_path).current_lock() is None


def test_refresh_only_removes_a_replica_that_is_gone(ws, monkeypatch):
    read = NullProvider.read
    monkeypatch.setattr(NullProvider, "read", lambda self, kind, address, attrs: ReadResult(
        exists=False, detail="no server process found") if address == "fleet.web[1]" else read(self, kind, address, attrs))
    shown = run("plan", str(ws.config_path), "--refresh-only", "--detailed-exitcode")
    assert shown.exit_code == 2, shown.output
    assert "fleet.web[1] is gone: it will be removed from state" in shown.output
    assert "No changes" not in shown.output

    done = run("apply", str(ws.config_path), "--refresh-only", "--auto-approve")
    assert done.exit_code == 0, done.output
    snap = ws.snapshot()
    assert snap.get("fleet.web[1]") is None and snap.get("fleet.web[0]") is not None
    assert snap.get("fleet.web").attributes["endpoints"] == ["null://fleet.web[0]"]
    audit = StateStore.open_readonly(ws.state_path).audit_log()
    assert any(a.event == "refresh-only" and a.address == "fleet.web[1]" for a in audit)
    again = run("plan", str(ws.config_path), "--refresh-only", "--detailed-exitcode")
    assert again.exit_code == 0, again.output

"""The drift run's contract: the documented JSON format, no lock and no resource-state writes,
server args from /server_info, errors when there is nothing to compare, and idle cleanup."""

from __future__ import annotations

import json
import time

import pytest

from helpers.drift import CONFIG
from helpers.cli import run
from infraplan.state import StateStore

pytestmark = pytest.mark.e2e

FINDING_KEYS = {"kind", "address", "summary", "evidence", "provider", "instance_id", "detail", "resource",
                "fingerprint", "new", "first_seen"}


def test_json_format_is_the_documented_one(make_fleet):
    fleet = make_fleet(1)
    fleet.kill("fleet.web[0]")
    res = fleet.drift("--json")
    data = json.loads(res.stdout)
    assert data["format_version"] == "1.0"
    assert {"infraplan_version", "started_at", "finished_at", "duration_s", "state", "config", "checked", "exit_code",
            "drift", "counts", "findings", "skipped", "notes", "alerts"} <= set(data)
    assert data["exit_code"] == res.exit_code == 2 and data["drift"] is True
    assert set(data["counts"]) == {"missing", "changed", "unhealthy", "orphaned", "idle", "error"}
    assert data["state"]["path"] == str(fleet.state.resolve())
    for f in data["findings"]:
        assert set(f) == FINDING_KEYS
        for e in f["evidence"]:
            assert set(e) == {"field", "expected", "seen", "source", "against"}
    from infraplan import drift

    assert '"format_version": "1.0"' in drift.__doc__ and drift.FORMAT_VERSION == "1.0"


def test_drift_runs_while_an_apply_holds_the_lock_and_writes_no_resource_state(make_fleet):
    fleet = make_fleet(2)
    fleet.restart_with("fleet.web[0]", args={"context_length": 4096})
    store = StateStore(fleet.state)
    before = (store.serial, [(r.address, r.attributes, r.status) for r in store.resources()])
    with store.lock("apply", who="someone-else") as held:
        res = fleet.drift("--json", "--no-orphans")
        assert store.current_lock().id == held.id  # not taken over, not released
    assert res.exit_code == 2, res.output
    ev = json.loads(res.stdout)["findings"][0]["evidence"]
    assert [(e["field"], e["expected"], e["seen"]) for e in ev] == [("args.context_length", 2048, 4096)]
    assert ev[0]["source"].endswith("/server_info")
    assert (store.serial, [(r.address, r.attributes, r.status) for r in store.resources()]) == before
    assert len(store.drift_runs()) == 1
    store.close()


def test_no_state_is_an_error_not_a_clean_run(tmp_path):
    (tmp_path / "main.yaml").write_text(CONFIG.format(replicas=1))
    res = run("drift", str(tmp_path))
    assert res.exit_code == 1 and "no state" in res.output
    assert not (tmp_path / "infraplan.db").exists()


def test_cleanup_include_idle_destroys_idle_replicas_with_approval_and_audit(make_fleet):
    fleet = make_fleet(1)
    pid = fleet.replicas()["fleet.web[0]"]["pid"]
    time.sleep(1.1)  # no request since it started
    refused = run("cleanup", str(fleet.path), "--include-idle", "--idle-after", "1s")
    assert refused.exit_code == 1 and "without approval" in refused.output
    assert "fleet.web[0]" in fleet.replicas()
    done = run("cleanup", str(fleet.path), "--include-idle", "--idle-after", "1s", "--auto-approve")
    assert done.exit_code == 0, done.output
    assert "[idle] fleet.web[0]" in done.output and "fleet.web[0]: removed" in done.output
    assert "fleet.web[0]" not in fleet.replicas()
    from infraplan_providers.local import process

    assert process.find_server(pid, None, None) is None
    events = {a.event for a in fleet.ws().store().audit_log()}
    assert {"cleanup", "cleanup-idle"} <= events


def test_refresh_concurrency_is_bounded_and_a_provider_bug_is_an_error():
    import threading

    from infraplan.drift import DriftSettings, detect
    from infraplan.providers.contract import ReadResult
    from infraplan.state.store import ResourceRecord, StateSnapshot

    class Provider:
        def __init__(self):
            self.now = self.most = 0
            self.lock = threading.Lock()

        def read(self, kind, address, attrs):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(0.03)
            with self.lock:
                self.now -= 1
            if address.endswith("[7]"):
                raise KeyError("bug")
            return ReadResult(exists=True, attributes=attrs, healthy=True)

    class Providers:
        provider = Provider()

        def get(self, key):
            return self.provider

    recs = [ResourceRecord(f"fleet.x[{i}]", "", "replica", "p", "ready", {"fleet": "fleet.x"}, None, [], None, "t", "t")
            for i in range(12)]
    providers = Providers()
    report, _ = detect(None, StateSnapshot("l", 1, recs), providers, DriftSettings(parallelism=3, orphans=False))
    assert providers.provider.most == 3
    assert [(f.kind, f.address) for f in report.findings if f.kind == "error"] == [("error", "fleet.x[7]")]
    assert report.exit_code == 1

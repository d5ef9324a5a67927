"""`infraplan drift` against real sim servers: each kind of drift, its evidence and exit code,
and the fix (`drift --plan-out` + `apply`, `cleanup`) leaving the next run clean."""

from __future__ import annotations

import json
import time

import pytest

from helpers.drift import traffic
from helpers.cli import run
from infraplan_providers.local import process

pytestmark = pytest.mark.e2e


def findings(result) -> dict[tuple[str, str], dict]:
    data = json.loads(result.stdout)
    return {(f["kind"], f["address"]): f for f in data["findings"]}


def test_clean_fleet_reports_no_drift_and_records_the_run(make_fleet):
    fleet = make_fleet(2)
    res = fleet.drift()
    assert res.exit_code == 0, res.output
    assert "No drift. Checked 2 replica(s)" in res.output
    hist = run("drift", str(fleet.path), "--history", "--json")
    runs = json.loads(hist.stdout)
    assert len(runs) == 1 and runs[0]["exit_code"] == 0 and sum(runs[0]["counts"].values()) == 0


def test_kill_restart_untracked_then_plan_apply_cleanup_is_clean(make_fleet, tmp_path):
    fleet = make_fleet(3)
    before = fleet.replicas()
    serial = fleet.ws().snapshot().serial
    fleet.kill("fleet.web[2]")
    fleet.restart_with("fleet.web[1]", model_revision="bbbb222")
    orphan = fleet.start_untracked()

    res = fleet.drift("--json")
    assert res.exit_code == 2, res.output
    got = findings(res)
    missing = got[("missing", "fleet.web[2]")]
    assert missing["evidence"][0]["expected"].startswith(f"instance {before['fleet.web[2]']['instance_id']}")
    assert missing["evidence"][0]["source"] == "provider local"

    changed = got[("changed", "fleet.web[1]")]
    ev = {e["field"]: e for e in changed["evidence"]}
    assert ev["model_revision"]["expected"] == "aaaa111" and ev["model_revision"]["seen"] == "bbbb222"
    assert ev["model_revision"]["source"] == f"{before['fleet.web[1]']['endpoint']}/server_info"

    count = got[("changed", "fleet.web")]
    assert count["evidence"][0]["field"] == "replicas"
    assert (count["evidence"][0]["expected"], count["evidence"][0]["seen"]) == (3, 2)

    orphaned = [f for (k, _), f in got.items() if k == "orphaned"]
    assert [f["instance_id"] for f in orphaned] == [orphan["instance_id"]]
    assert orphaned[0]["resource"]["pid"] == orphan["pid"]
    assert {k for k, _ in got} == {"missing", "changed", "orphaned"}
    # drift wrote no resource state and took no lock
    assert fleet.ws().snapshot().serial == serial and fleet.replicas() == before

    # the human report groups by kind and shows the evidence
    human = fleet.drift()
    assert human.exit_code == 2
    assert "Missing (1):" in human.output and "Orphaned (1):" in human.output
    assert "model_revision: expected aaaa111 (state), seen bbbb222" in human.output

    plan_file = tmp_path / "fix.json"
    res = fleet.drift("--plan-out", str(plan_file))
    assert res.exit_code == 2 and plan_file.exists()
    actions = {c["address"]: c["action"] for c in json.loads(plan_file.read_text())["changes"]}
    assert actions["fleet.web[1]"] == "replace" and actions["fleet.web[2]"] == "create"
    applied = run("apply", str(plan_file))
    assert applied.exit_code == 0, applied.output

    res = fleet.drift("--json")
    assert res.exit_code == 2 and {k for k, _ in findings(res)} == {"orphaned"}  # plan does not touch orphans
    cleaned = run("cleanup", str(fleet.path), "--auto-approve")
    assert cleaned.exit_code == 0, cleaned.output
    assert f"local/{orphan['instance_id']}: removed" in cleaned.output
    assert not process.find_server(orphan["pid"], None, orphan["instance_id"])
    audit = [a for a in fleet.ws().store().audit_log() if a.event == "cleanup-orphan"]
    assert audit and audit[0].details["removed"] and audit[0].address == f"local/{orphan['instance_id']}"

    res = fleet.drift()
    assert res.exit_code == 0, res.output
    trend = run("drift", str(fleet.path), "--history")
    lines = [line for line in trend.output.splitlines() if line.strip() and not line.lstrip().startswith("run")]
    assert len(lines) == 5 and lines[0].split()[3] == "0" and lines[-1].split()[3] == "2"


def test_stopped_traffic_is_idle(make_fleet):
    fleet = make_fleet(2)
    reps = fleet.replicas()
    for r in reps.values():
        traffic(r["endpoint"])
    first = fleet.drift("--idle-after", "1s", "--json", "--no-orphans")
    assert first.exit_code == 0, first.output  # both just served requests
    traffic(reps["fleet.web[0]"]["endpoint"], 1)
    time.sleep(1.2)
    traffic(reps["fleet.web[0]"]["endpoint"], 1)  # [0] keeps serving, [1] stopped
    second = fleet.drift("--idle-after", "1s", "--json", "--no-orphans")
    assert second.exit_code == 2, second.output
    got = findings(second)
    assert list(got) == [("idle", "fleet.web[1]")]
    ev = got[("idle", "fleet.web[1]")]["evidence"][0]
    assert ev["seen"].startswith("3 in total") and ev["source"].endswith("/metrics")


@pytest.mark.parametrize("mode", ["hang", "garbage", "badjson"])
def test_a_server_that_hangs_or_answers_garbage_is_an_error_within_the_timeout(make_fleet, mode):
    fleet = make_fleet(1)
    fleet.start_fake(mode, "fleet.web[0]")
    t0 = time.monotonic()
    res = run("drift", str(fleet.path), "--timeout", "0.3", "--json", "--no-orphans")
    took = time.monotonic() - t0
    assert res.exit_code == 1, res.output
    got = findings(res)
    assert ("error", "fleet.web[0]") in got, got
    assert took < 6
    what = got[("error", "fleet.web[0]")]["evidence"][0]["seen"]
    assert {"hang": "no answer", "garbage": "garbage", "badjson": "not JSON"}[mode] in what


def test_unhealthy_server(make_fleet):
    fleet = make_fleet(2)
    fake = fleet.start_fake("unhealthy", "fleet.web[1]")
    res = fleet.drift("--json", "--no-orphans")
    assert res.exit_code == 2, res.output
    got = findings(res)
    f = got[("unhealthy", "fleet.web[1]")]
    assert f["evidence"][0]["seen"] == "HTTP 503"
    assert f["evidence"][0]["source"] == f"{fake['endpoint']}/ready"  # SGLang 0.5.23: /ready, no generation
    assert ("unhealthy", "fleet.web[0]") not in got


def test_refresh_only_accepts_observed_changes_without_touching_servers(make_fleet, tmp_path):
    fleet = make_fleet(2)
    new_pid = fleet.restart_with("fleet.web[0]", model_revision="cccc333")
    saved = tmp_path / "refresh.json"
    shown = run("plan", str(fleet.path), "--refresh-only", "--detailed-exitcode", "--out", str(saved))
    assert shown.exit_code == 2, shown.output
    assert "fleet.web[0]" in shown.output
    assert {c["action"] for c in json.loads(saved.read_text())["changes"]} == {"refresh"}
    done = run("apply", str(saved))
    assert done.exit_code == 0, done.output
    again = run("apply", str(fleet.path), "--refresh-only", "--auto-approve")  # nothing left to accept
    assert again.exit_code == 0 and fleet.replicas()["fleet.web[1]"]["model_revision"] == "aaaa111"
    rec = fleet.replicas()["fleet.web[0]"]
    assert rec["model_revision"] == "cccc333" and rec["pid"] == new_pid
    assert process.find_server(new_pid, None, rec["instance_id"]) is not None  # not replaced
    audit = fleet.ws().store().audit_log()
    assert any(a.event == "refresh-only" and a.address == "fleet.web[0]" for a in audit)
    assert any(a.event == "apply-refresh-only" for a in audit)
    # the world now matches state, not config: drift says so, against the config
    res = fleet.drift("--json", "--no-orphans")
    ev = findings(res)[("changed", "fleet.web[0]")]["evidence"]
    assert [(e["field"], e["against"], e["expected"], e["seen"]) for e in ev] == [
        ("model_revision", "config", "aaaa111", "cccc333")]

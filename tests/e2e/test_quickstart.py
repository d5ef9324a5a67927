"""The quick start, end to end, with real server processes on 127.0.0.1."""

from __future__ import annotations

import json

import httpx
import pytest

from infraplan.state import StateStore

pytestmark = pytest.mark.e2e


def replicas(state_path):
    snap = StateStore.open_readonly(state_path).snapshot()
    return {r.address: r for r in snap.resources if r.kind == "replica"}


def test_quickstart_lifecycle(quickstart, leftover_servers):
    p = quickstart
    plan = p.run("plan", "--detailed-exitcode", check=False)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in plan.stdout

    p.run("apply", "--auto-approve")
    reps = replicas(p.state)
    assert sorted(reps) == ["fleet.chat[0]", "fleet.chat[1]"]
    endpoint = p.run("output", "--raw", "endpoint").stdout.strip()
    assert endpoint == reps["fleet.chat[0]"].attributes["endpoint"]

    # a real request through SGLang's OpenAI-compatible API
    r = httpx.post(f"{endpoint}/v1/chat/completions", json={
        "model": "llama-3.1-8b", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8})
    assert r.status_code == 200
    body = r.json()
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == 8
    info = httpx.get(f"{endpoint}/server_info").json()  # SGLang reports the revision there
    assert info["revision"] == "0e9e39f"

    # nothing to do now
    assert p.run("plan", "--detailed-exitcode", check=False).returncode == 0

    # a revision change is a precise replacement plan
    plan = p.run("plan", "--var", "revision=4f1a2b3", "--json")
    doc = json.loads(plan.stdout)
    by_addr = {c["address"]: c for c in doc["changes"]}
    for addr in ("fleet.chat[0]", "fleet.chat[1]"):
        assert by_addr[addr]["action"] == "replace"
        assert by_addr[addr]["requires_replace"] == ["model_revision"]
        assert by_addr[addr]["create_before_destroy"] is True
    assert by_addr["model.llama"]["action"] == "update"
    old_pids = {a: r.attributes["pid"] for a, r in reps.items()}

    p.run("apply", "--var", "revision=4f1a2b3", "--auto-approve")
    reps = replicas(p.state)
    assert {a: r.attributes["pid"] for a, r in reps.items()}.keys() == old_pids.keys()
    assert all(reps[a].attributes["pid"] != old_pids[a] for a in reps)
    for r in reps.values():
        assert httpx.get(f"{r.attributes['endpoint']}/server_info").json()["revision"] == "4f1a2b3"
    assert len(leftover_servers()) == 2  # the old servers are gone

    history = StateStore.open_readonly(p.state).history()
    assert [h.operation for h in history] == ["apply", "apply"]

    p.run("destroy", "--auto-approve")
    assert replicas(p.state) == {}
    assert leftover_servers() == []


def test_rollback_applies_the_previous_config_from_history(quickstart):
    p = quickstart
    p.run("apply", "--auto-approve")
    p.run("apply", "--auto-approve", "--var", "revision=4f1a2b3")
    assert {r.attributes["model_revision"] for r in replicas(p.state).values()} == {"4f1a2b3"}

    res = p.run("rollback", "--auto-approve")
    assert "Rolling back to the config of history #1" in res.stdout
    reps = replicas(p.state)
    assert {r.attributes["model_revision"] for r in reps.values()} == {"0e9e39f"}
    for r in reps.values():
        assert httpx.get(f"{r.attributes['endpoint']}/server_info").json()["revision"] == "0e9e39f"
    history = StateStore.open_readonly(p.state).history()
    assert [h.operation for h in history] == ["rollback", "apply", "apply"]
    assert StateStore.open_readonly(p.state).audit_log()[0].event == "rollback"

    # nothing earlier than #1 exists: asking for a missing entry is a one-line error
    bad = p.run("rollback", "--to", "99", "--auto-approve", check=False)
    assert bad.returncode == 1 and "history #99" in bad.stderr and "Traceback" not in bad.stderr

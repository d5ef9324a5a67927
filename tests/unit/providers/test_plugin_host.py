"""The plugin host: a provider served from another process, over the real worker.

The `null` provider stands in for an SDK-heavy one; its "plugin venv" is this
venv (`plugin_venv` in tests/conftest.py), which is enough: the worker still loads
infraplan by path in a separate process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from infraplan.diagnostics import Diagnostic, Location
from infraplan.errors import ProviderError, ProviderUnavailable, ResourceNotFound
from infraplan.providers.plugin.host import RemoteProvider, decode, decode_error, encode, encode_error, runs_in_plugin
from infraplan.providers.plugin.protocol import ErrorCode
from infraplan.providers.contract import ProviderContext, ProviderPlan, ReadResult, ResourceKind
from infraplan_providers.null.provider import NullProvider
from infraplan_providers.skypilot.client import NoCapacity


REPLICA = ResourceKind.REPLICA


@pytest.fixture
def plugin_dir(plugin_venv):
    plugin_venv("null")
    return plugin_venv.root


def error(exc: BaseException) -> dict:
    """`exc` as the worker sends it: a JSON-RPC error with the exception as `data`."""
    return {"code": ErrorCode.PROVIDER_ERROR, "message": str(exc), "data": encode_error(exc)}


def remote(tmp_path, **settings) -> RemoteProvider:
    ctx = ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path / "rt",
                          settings=settings, name="n")
    return RemoteProvider.connect(NullProvider, ctx, "null")


def test_wire_format_keeps_the_contract_types():
    plan = ProviderPlan(attributes={"a": [1, {"b": None}]}, requires_replace=["model_revision"],
                        diagnostics=[Diagnostic("tight fit", severity="warning", location=Location("f.yaml", 3, 5),
                                                path="fleet.x")])
    back = decode(json.loads(json.dumps(encode(plan))))
    assert back == plan and isinstance(back.diagnostics[0].location, Location)
    assert decode(encode(ReadResult(exists=False, detail="gone"))) == ReadResult(exists=False, detail="gone")


def test_errors_come_back_as_the_same_class_with_their_fields():
    exc = decode_error(error(NoCapacity("no capacity", ["aws: InsufficientInstanceCapacity"])), "skypilot")
    assert type(exc) is NoCapacity and exc.failover_history == ["aws: InsufficientInstanceCapacity"]
    assert str(exc) == "no capacity"
    other = decode_error(error(KeyError("x")), "skypilot")
    assert type(other) is ProviderError and "skypilot plugin: KeyError" in str(other)


def test_a_remote_provider_runs_in_another_process(tmp_path, plugin_dir):
    p = remote(tmp_path)
    try:
        hello = p.hello()
        assert hello["pid"] != os.getpid()
        plan = p.plan(REPLICA, None, {"fleet": "fleet.a", "index": 0})
        assert isinstance(plan, ProviderPlan) and plan.attributes["index"] == 0
        attrs = p.create(REPLICA, "fleet.a[0]", p.prepare_create(REPLICA, "fleet.a[0]", plan.attributes))
        assert attrs["id"] and attrs["endpoint"]
        got = p.read(REPLICA, "fleet.a[0]", attrs)
        assert isinstance(got, ReadResult) and got.exists
        assert p.validate_settings() == []
    finally:
        p.close()
    assert p.process._proc is None


def test_errors_raised_in_the_worker_keep_their_class(tmp_path, plugin_dir):
    p = remote(tmp_path, fail_addresses=["fleet.a[1]"])
    try:
        with pytest.raises(ProviderError, match="fleet.a\\[1\\]"):
            p.create(REPLICA, "fleet.a[1]", {"fleet": "fleet.a", "index": 1})
        bad = remote(tmp_path, latency_ms=-1)
        try:
            diag = bad.validate_settings()[0]
            assert isinstance(diag, Diagnostic) and diag.path == "provider.n.settings.latency_ms"
        finally:
            bad.close()
    finally:
        p.close()


def test_concurrent_calls_are_answered_to_their_own_callers(tmp_path, plugin_dir):
    p = remote(tmp_path, latency_ms=20)
    results: dict[int, dict] = {}

    def one(i: int) -> None:
        results[i] = p.create(REPLICA, f"fleet.a[{i}]", {"fleet": "fleet.a", "index": i})

    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        p.close()
    assert sorted(results) == list(range(40))
    assert all(r["index"] == i for i, r in results.items())
    assert len({r["id"] for r in results.values()}) == 40


def test_a_worker_that_dies_fails_its_calls_with_the_log_tail(tmp_path, plugin_dir, monkeypatch):
    crash = tmp_path / "crash.py"
    crash.write_text("import os, sys\n"
                     "from infraplan_providers.null import provider\n"
                     "def create(self, kind, address, attrs):\n"
                     "    print('about to die', file=sys.stderr, flush=True)\n"
                     "    os._exit(3)\n"
                     "provider.NullProvider.create = create\n")
    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(crash))
    p = remote(tmp_path)
    try:
        with pytest.raises(ProviderError, match=r"exited \(code 3\).*about to die"):
            p.create(REPLICA, "fleet.a[0]", {"fleet": "fleet.a", "index": 0})
        with pytest.raises(ProviderError, match="is gone"):
            p.read(REPLICA, "fleet.a[0]", {})
    finally:
        p.close()


def test_stdout_noise_in_the_worker_does_not_break_the_channel(tmp_path, plugin_dir, monkeypatch):
    noisy = tmp_path / "noisy.py"
    noisy.write_text("from infraplan_providers.null import provider\n"
                     "orig = provider.NullProvider.read\n"
                     "def read(self, kind, address, attrs):\n"
                     "    print('{\"jsonrpc\": \"2.0\", \"id\": 2, \"result\": \"forged\"}')\n"
                     "    return orig(self, kind, address, attrs)\n"
                     "provider.NullProvider.read = read\n")
    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(noisy))
    p = remote(tmp_path)
    try:
        assert isinstance(p.read(REPLICA, "fleet.a[0]", {"id": "x"}), ReadResult)
    finally:
        p.close()
    assert "forged" in (tmp_path / "rt" / "plugins" / "null.log").read_text()


def test_isolation_choice(plugin_dir, monkeypatch):
    assert runs_in_plugin(NullProvider, "null", "plugin")
    assert not runs_in_plugin(NullProvider, "null", "in_process")
    assert not runs_in_plugin(NullProvider, "null", "auto")  # needs no SDK

    class NeedsSdk(NullProvider):
        requires = ("no_such_sdk_module_xyz",)

    assert runs_in_plugin(NeedsSdk, "null", "auto")  # not importable here, plugin installed
    assert not runs_in_plugin(NeedsSdk, "other", "auto")  # no plugin either: in-process, fails with hints


def test_plugin_isolation_without_an_install_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("INFRAPLAN_PLUGIN_DIR", str(tmp_path / "none"))
    with pytest.raises(ProviderUnavailable, match="infraplan plugins install null"):
        remote(tmp_path)


def test_plan_and_apply_through_a_plugin_from_the_cli(tmp_path, plugin_dir):
    (tmp_path / "main.yaml").write_text(
        'provider:\n  bench:\n    type: "null"\n    isolation: plugin\n'
        'model:\n  m:\n    source: hf://org/m\n    revision: r1\n'
        'fleet:\n  a:\n    model: model.m\n    provider: bench\n    replicas: 3\n')
    env = dict(os.environ, NO_COLOR="1")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "infraplan", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)

    applied = run("apply", "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    listed = run("state", "list")
    assert [line for line in listed.stdout.split() if line.startswith("fleet.a[")] == \
        ["fleet.a[0]", "fleet.a[1]", "fleet.a[2]"]
    again = run("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / ".infraplan" / "infraplan" / "plugins" / "null.log").exists()

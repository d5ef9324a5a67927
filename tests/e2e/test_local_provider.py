"""The local provider against real processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from infraplan.errors import ProviderError
from infraplan.providers.contract import ProviderContext
from infraplan_providers.local import process
from infraplan_providers.local.provider import LocalProvider
from infraplan.models.kinds import ResourceKind

from helpers.timing import within

pytestmark = pytest.mark.e2e

# A stand-in server used where the test needs a misbehaving process. It is run
# in place of the interpreter (settings.python), so it receives the sim's argv.
FAKE_SERVER = textwrap.dedent(
    """\
    import json, os, signal, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    mode = os.environ.get("FAKE_MODE", "serve")
    if mode == "crash":
        print("boom: cannot load weights", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "hang":
        time.sleep(60)
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    port = int(sys.argv[sys.argv.index("--port") + 1])

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = {"/health": {}, "/model_info": {"model_path": os.environ.get("FAKE_MODEL", "other/model")},
                    "/server_info": {"revision": os.environ.get("FAKE_REVISION")}}  # as SGLang 0.5.23: not in /model_info
            if self.path not in body:
                self.send_response(404); self.end_headers(); return
            data = json.dumps(body[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


@pytest.fixture
def spawned(monkeypatch):
    """Pids of every process a test starts; all are killed at teardown, pass or fail."""
    pids: list[int] = []
    real_spawn = process.spawn_detached

    def recording_spawn(*args, **kwargs):
        popen = real_spawn(*args, **kwargs)
        pids.append(popen.pid)
        return popen

    monkeypatch.setattr(process, "spawn_detached", recording_spawn)
    yield pids
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
        process.stop_pid(pid, 0)  # reaps our child


@pytest.fixture
def make_provider(tmp_path, spawned):
    def make(**settings) -> LocalProvider:
        ctx = ProviderContext(
            project_dir=tmp_path,
            state_path=tmp_path / "state.db",
            runtime_dir=tmp_path / "run",
            settings={"ready_timeout_s": 20, "stop_timeout_s": 3, **settings},
            name="local",
        )
        return LocalProvider(ctx)

    return make


@pytest.fixture
def provider(make_provider) -> LocalProvider:
    return make_provider()


@pytest.fixture
def fake_python(tmp_path) -> str:
    """An executable that stands in for the interpreter and runs FAKE_SERVER."""
    script = tmp_path / "fake_server.py"
    script.write_text(f"#!{sys.executable}\n{FAKE_SERVER}")
    script.chmod(0o755)
    return str(script)


def attrs(index: int = 0, **over) -> dict:
    base = {
        "fleet": "fleet.chat",
        "index": index,
        "engine": "sim",
        "model": "model.llama",
        "model_source": "hf://org/llama",
        "model_revision": "a1b2c3d",
        "served_name": "llama-3.1-8b",
        "args": {"context_length": 8192},
        "sim": {"ttft_ms": 1.0, "tpot_ms": 1.0, "error_rate": 0.0, "startup_s": 0.0, "seed": 0},
        "env": {},
        "accelerators": None,
        "port": None,
        "labels": {"team": "a"},
        "region": None,
        "cloud": None,
    }
    base.update(over)
    return base


def launch(p: LocalProvider, address: str = "fleet.chat[0]", **over) -> dict:
    return p.create(ResourceKind.REPLICA, address, p.prepare_create(ResourceKind.REPLICA, address, attrs(**over)))


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- create / read / delete with the sim -----------------------------------


def test_create_serves_health_and_model_info(provider):
    a = launch(provider)
    assert a["host"] == "127.0.0.1"
    assert a["endpoint"] == f"http://127.0.0.1:{a['port']}"
    assert 20000 <= a["port"] <= 29999  # below the ephemeral range: no source port takes it
    assert alive(a["pid"])
    assert abs(psutil.Process(a["pid"]).create_time() - a["started_at"]) < 1
    assert Path(a["log_path"]).is_file()
    assert Path(a["log_path"]).parent == provider.context.runtime_dir / "logs"
    assert httpx.get(a["endpoint"] + "/health", timeout=2).status_code == 200
    info = httpx.get(a["endpoint"] + "/model_info", timeout=2).json()
    assert info["model_path"] in {"hf://org/llama", "org/llama"}
    # The server is detached: its own session, so it outlives the CLI.
    assert os.getsid(a["pid"]) == a["pid"] != os.getsid(0)


def test_read_reports_exists_healthy_and_observed_model(provider):
    a = launch(provider)
    result = provider.read(ResourceKind.REPLICA, "fleet.chat[0]", a)
    assert result.exists and result.healthy
    assert result.attributes["pid"] == a["pid"]
    assert result.attributes["model_source"] == "hf://org/llama"
    assert result.attributes["model_revision"] == "a1b2c3d"
    assert result.detail is None


def test_read_reports_model_drift(provider):
    a = launch(provider)
    recorded = {**a, "model_source": "hf://org/other", "model_revision": "ffff000"}
    result = provider.read(ResourceKind.REPLICA, "fleet.chat[0]", recorded)
    assert result.exists
    assert result.attributes["model_source"] in {"hf://org/llama", "org/llama"}
    assert "hf://org/other" in result.detail


def test_killed_server_reads_as_gone(provider):
    a = launch(provider)
    os.kill(a["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(a["pid"]) and time.monotonic() < deadline:  # SIGKILL lands asynchronously
        time.sleep(0.01)
    result = provider.read(ResourceKind.REPLICA, "fleet.chat[0]", a)
    assert result.exists is False


def test_delete_is_idempotent_and_leaves_no_process(provider):
    a = launch(provider)
    children = [c.pid for c in psutil.Process(a["pid"]).children(recursive=True)]
    provider.delete(ResourceKind.REPLICA, "fleet.chat[0]", a)
    assert not alive(a["pid"])
    assert not any(alive(pid) for pid in children)
    assert process.find_by_instance_id(a["instance_id"]) is None
    provider.delete(ResourceKind.REPLICA, "fleet.chat[0]", a)  # already gone is success
    assert provider.read(ResourceKind.REPLICA, "fleet.chat[0]", a).exists is False
    assert a["port"] not in process.ports.claimed()


def test_crash_between_spawn_and_record_is_recovered(provider):
    a = launch(provider)
    lost = {k: v for k, v in a.items() if k not in {"pid", "started_at"}}
    result = provider.read(ResourceKind.REPLICA, "fleet.chat[0]", lost)
    assert result.exists and result.healthy
    assert result.attributes["pid"] == a["pid"]
    provider.delete(ResourceKind.REPLICA, "fleet.chat[0]", lost)
    assert not alive(a["pid"])


def test_parallel_creates_get_different_ports(provider):
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            results[i] = launch(provider, f"fleet.chat[{i}]", index=i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ports = {r["port"] for r in results.values()}
    assert len(ports) == 3
    for r in results.values():
        assert httpx.get(r["endpoint"] + "/health", timeout=2).status_code == 200


def test_prepare_create_allocates_distinct_ports_across_threads(provider):
    got: list[int] = []
    lock = threading.Lock()

    def go(i: int) -> None:
        port = provider.prepare_create(ResourceKind.REPLICA, f"fleet.chat[{i}]", attrs(index=i))["port"]
        with lock:
            got.append(port)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 16


def test_fixed_port_in_use_is_a_clear_error(provider, spawned):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ProviderError, match=f"port {port} .*already in use"):
            launch(provider, port=port)
    assert spawned == []  # nothing was started


def test_fixed_port_is_used(provider):
    port = process.ports.allocate("127.0.0.1", 40000, 40999, "test")
    process.ports.release(port, "test")
    a = launch(provider, port=port)
    assert a["port"] == port and a["endpoint"].endswith(f":{port}")


def test_read_with_api_key_reports_model(provider):
    a = launch(provider, args={"api_key": "s3cret"}, model_revision="beef123")
    result = provider.read(ResourceKind.REPLICA, "fleet.chat[0]", {**a, "model_revision": "0000000"})
    assert result.healthy
    assert result.attributes["model_revision"] == "beef123"  # /model_info needed the key


def test_create_checks_the_revision_that_server_info_reports(make_provider, fake_python, spawned):
    """SGLang 0.5.23 reports the revision in /server_info only: a server of another revision is refused."""
    p = make_provider(python=fake_python)
    with pytest.raises(ProviderError, match="server reports revision 'ffff999', expected 'a1b2c3d'"):
        launch(p, env={"FAKE_MODEL": "org/llama", "FAKE_REVISION": "ffff999"})
    a = launch(p, "fleet.chat[1]", index=1, env={"FAKE_MODEL": "org/llama", "FAKE_REVISION": "a1b2c3d"})
    assert alive(a["pid"])


def test_read_asks_ready_not_the_slow_health(provider):
    """The sim's /health costs SGLang's second; the read asks /ready and answers well under it."""
    a = launch(provider)
    t0 = time.monotonic()
    result = provider.read(ResourceKind.REPLICA, "fleet.chat[0]", a)
    assert result.healthy is True and time.monotonic() - t0 < within(0.6)


def test_read_notices_another_server_on_the_port(provider):
    a = launch(provider, "fleet.chat[0]")
    b = launch(provider, "fleet.chat[1]", index=1)
    result = provider.read(ResourceKind.REPLICA, "fleet.chat[0]", {**a, "endpoint": b["endpoint"]})
    assert result.exists and result.healthy is False
    assert b["instance_id"] in result.detail


# -- failures, with a stand-in server ---------------------------------------


def test_server_that_exits_at_once(make_provider, fake_python, spawned):
    p = make_provider(python=fake_python)
    with pytest.raises(ProviderError) as err:
        launch(p, env={"FAKE_MODE": "crash"})
    msg = str(err.value)
    assert "code 3" in msg and "boom: cannot load weights" in msg
    assert len(spawned) == 1 and not alive(spawned[0])


def test_server_that_never_gets_healthy_is_killed(make_provider, fake_python, spawned):
    p = make_provider(python=fake_python, ready_timeout_s=1, stop_timeout_s=1)
    with pytest.raises(ProviderError, match="not healthy after 1s"):
        launch(p, env={"FAKE_MODE": "hang"})
    assert len(spawned) == 1 and not alive(spawned[0])


def test_server_serving_another_model_is_rejected(make_provider, fake_python, spawned):
    p = make_provider(python=fake_python)
    with pytest.raises(ProviderError, match="other/model"):
        launch(p, env={"FAKE_MODE": "serve", "FAKE_MODEL": "other/model"})
    assert len(spawned) == 1 and not alive(spawned[0])


def test_delete_escalates_to_sigkill(make_provider, fake_python):
    p = make_provider(python=fake_python, stop_timeout_s=0.3)
    a = launch(p, env={"FAKE_MODE": "ignore_term", "FAKE_MODEL": "org/llama"})
    assert p.read(ResourceKind.REPLICA, "fleet.chat[0]", a).healthy
    p.delete(ResourceKind.REPLICA, "fleet.chat[0]", a)
    assert not alive(a["pid"])


def test_foreign_process_with_recorded_pid_is_left_alone(provider, spawned):
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    spawned.append(other.pid)
    recorded = {
        **attrs(),
        "instance_id": "0" * 32,
        "pid": other.pid,
        "started_at": psutil.Process(other.pid).create_time(),
        "port": 1,
        "endpoint": "http://127.0.0.1:1",
    }
    assert provider.read(ResourceKind.REPLICA, "fleet.chat[0]", recorded).exists is False
    provider.delete(ResourceKind.REPLICA, "fleet.chat[0]", recorded)
    assert alive(other.pid)
    assert process.find_by_pid(other.pid, recorded["started_at"] - 50, None) is None
    other.kill()
    other.wait()


# -- plan and settings (no processes) --------------------------------------


def prior_attrs(**over) -> dict:
    return {
        **attrs(),
        "port": 31234,
        "instance_id": "abc",
        "host": "127.0.0.1",
        "endpoint": "http://127.0.0.1:31234",
        "pid": 42,
        "started_at": 1.0,
        "log_path": "/tmp/x.log",
        **over,
    }


def test_plan_revision_change_requires_replace(provider):
    plan = provider.plan(ResourceKind.REPLICA, prior_attrs(), attrs(model_revision="fff0000"))
    assert plan.requires_replace == ["model_revision"]
    assert plan.attributes["port"] is None  # the replacement gets a port of its own
    assert "pid" not in plan.attributes
    assert plan.create_before_destroy_ok


def test_plan_labels_change_in_place_keeps_identity(provider):
    plan = provider.plan(ResourceKind.REPLICA, prior_attrs(), attrs(labels={"team": "b"}))
    assert plan.requires_replace == []
    assert plan.attributes["labels"] == {"team": "b"}
    assert plan.attributes["pid"] == 42 and plan.attributes["endpoint"] == "http://127.0.0.1:31234"


def test_plan_port_none_keeps_prior_port(provider):
    plan = provider.plan(ResourceKind.REPLICA, prior_attrs(), attrs(port=None))
    assert plan.requires_replace == []
    assert plan.attributes["port"] == 31234


def test_plan_fixed_port_change(provider):
    plan = provider.plan(ResourceKind.REPLICA, prior_attrs(), attrs(port=31300))
    assert plan.requires_replace == ["port"]
    assert plan.create_before_destroy_ok is False
    same = provider.plan(ResourceKind.REPLICA, prior_attrs(), attrs(port=31234))
    assert same.requires_replace == [] and same.create_before_destroy_ok is False


def test_plan_engine_args_and_sim_changes(provider):
    plan = provider.plan(ResourceKind.REPLICA, prior_attrs(), attrs(args={"context_length": 4096}, sim={"ttft_ms": 9.0}))
    assert plan.requires_replace == ["args", "sim"]


def test_plan_diagnostics(provider, monkeypatch):
    plan = provider.plan(ResourceKind.REPLICA, None, attrs(accelerators="H100:1", engine="sglang"))
    warn = [d for d in plan.diagnostics if d.severity == "warning"]
    assert any("not allocated" in d.summary and d.path == "fleet.chat.accelerators" for d in warn)
    # the simulator uses no GPU: its accelerators feed the fit check and cost, as meant, with no warning
    plan = provider.plan(ResourceKind.REPLICA, None, attrs(accelerators="H100:1"))
    assert [d for d in plan.diagnostics if d.severity == "warning"] == []

    import infraplan_providers.local.provider as mod

    monkeypatch.setattr(mod.importlib.util, "find_spec", lambda name: None)
    plan = provider.plan(ResourceKind.REPLICA, None, attrs(engine="sglang"))
    errors = [d for d in plan.diagnostics if d.severity == "error"]
    assert [d.summary for d in errors] == ["engine sglang needs SGLang installed: pip install 'infraplan[sglang]'"]


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"host": "0.0.0.0"}, "provider.local.settings.host"),
        ({"port_range": "40000-30000"}, "provider.local.settings.port_range"),
        ({"port_range": "abc"}, "provider.local.settings.port_range"),
        ({"ready_timeout_s": 0}, "provider.local.settings.ready_timeout_s"),
        ({"prot_range": "1-2"}, "provider.local.settings.prot_range"),
    ],
)
def test_bad_settings_are_diagnostics(make_provider, settings, where):
    p = make_provider(**settings)
    diags = p.validate_settings()
    assert [d.path for d in diags] == [where]
    assert all(d.severity == "error" for d in diags)
    with pytest.raises(ProviderError, match="provider local: settings"):
        p.prepare_create(ResourceKind.REPLICA, "fleet.chat[0]", attrs())


def test_good_settings(make_provider):
    p = make_provider(host="127.0.0.2", port_range="35000-35010")
    assert p.validate_settings() == []
    assert 35000 <= p.prepare_create(ResourceKind.REPLICA, "fleet.x[0]", attrs())["port"] <= 35010


def test_sglang_engine_argv_and_env_recovery(make_provider, fake_python, monkeypatch):
    import infraplan_providers.local.provider as mod

    real = mod.importlib.util.find_spec
    monkeypatch.setattr(mod.importlib.util, "find_spec", lambda n: object() if n == "sglang" else real(n))
    p = make_provider(python=fake_python)
    a = launch(p, engine="sglang", env={"FAKE_MODEL": "org/llama"})
    cmd = psutil.Process(a["pid"]).cmdline()
    assert cmd[2:4] == ["-m", "sglang.launch_server"]
    assert cmd[cmd.index("--model-path") + 1] == "org/llama"
    assert cmd[cmd.index("--port") + 1] == str(a["port"])
    assert a["instance_id"] not in " ".join(cmd)  # found through the environment only
    lost = {k: v for k, v in a.items() if k not in {"pid", "started_at"}}
    assert p.read(ResourceKind.REPLICA, "fleet.chat[0]", lost).attributes["pid"] == a["pid"]
    p.delete(ResourceKind.REPLICA, "fleet.chat[0]", lost)
    assert not alive(a["pid"])

"""Warm plugin workers: one process serving many sessions over a private UNIX socket.

Real worker processes (`warm_plugins`: this venv as the plugin's, INFRAPLAN_PLUGIN_KEEP=1), real
sockets; the provider is the null provider, patched by a preload where a test needs to see inside.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from infraplan.errors import ProviderTimeout, ProviderUnavailable
from infraplan.models.kinds import ResourceKind
from infraplan.providers.contract import ProviderContext
from infraplan.providers.plugin import warm
from infraplan.providers.plugin.channel import PluginProcess
from infraplan.providers.plugin.host import RemoteProvider
from infraplan_providers.null.provider import NullProvider

from helpers.cli import run
from helpers.timing import within

ROUTER = ResourceKind.ROUTER

COUNTING = """\
from infraplan_providers.null import provider
init = provider.NullProvider.__init__
def counting_init(self, ctx):
    init(self, ctx)
    self.made = 0
def create(self, kind, address, attrs):
    self.made += 1
    return dict(attrs, made=self.made, state=str(self.context.state_path), lineage=self.context.lineage,
                instance=id(self))
provider.NullProvider.__init__ = counting_init
provider.NullProvider.create = create
"""

SLOW = ("import time\n"
        "from infraplan_providers.null import provider\n"
        "def slow(self, kind, address, attrs):\n"
        "    time.sleep(30)\n"
        "    return dict(attrs)\n"
        "provider.NullProvider.create = slow\n")


def context(tmp_path: Path, state: str = "s.db", lineage: str = "") -> ProviderContext:
    return ProviderContext(project_dir=tmp_path, state_path=tmp_path / state, runtime_dir=tmp_path / "rt",
                           name="p", lineage=lineage)


def preload(tmp_path: Path, monkeypatch, code: str) -> None:
    script = tmp_path / "preload.py"
    script.write_text(code)
    monkeypatch.setenv("INFRAPLAN_PLUGIN_PRELOAD", str(script))


def connect(tmp_path: Path, **kw) -> RemoteProvider:
    return RemoteProvider.connect(NullProvider, context(tmp_path, **kw), "null")


def pid_of(p: RemoteProvider) -> int:
    return p.hello()["pid"]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return gone(pid)


# -- when workers are kept ----------------------------------------------------------------
@pytest.mark.parametrize("env, keep", [
    ({}, True),
    ({"INFRAPLAN_PLUGIN_KEEP": "0"}, False),
    ({"CI": "true"}, False),
    ({"INFRAPLAN_CI": "1"}, False),
    ({"CI": "true", "INFRAPLAN_PLUGIN_KEEP": "1"}, True),
    ({"CI": "false"}, True),
])
def test_workers_are_kept_warm_except_in_ci_unless_told(env, keep):
    assert warm.keep_warm(env) is keep


def test_bad_keep_and_idle_values_are_one_line_errors():
    with pytest.raises(ProviderUnavailable, match=r"^INFRAPLAN_PLUGIN_KEEP must be 1 .* or 0 .*not 'sometimes'$"):
        warm.keep_warm({"INFRAPLAN_PLUGIN_KEEP": "sometimes"})
    with pytest.raises(ProviderUnavailable, match="INFRAPLAN_PLUGIN_IDLE must be a number of seconds"):
        warm.idle_timeout_s({"INFRAPLAN_PLUGIN_IDLE": "-3"})
    assert warm.idle_timeout_s({}) == 300.0
    assert warm.idle_timeout_s({"INFRAPLAN_PLUGIN_IDLE": "90"}) == 90.0
    assert warm.idle_timeout_s({"INFRAPLAN_PLUGIN_IDLE": "10m"}) == 600.0


def test_one_shot_mode_starts_a_process_per_connection(tmp_path, warm_plugins, monkeypatch):
    warm_plugins("null")
    monkeypatch.setenv("INFRAPLAN_PLUGIN_KEEP", "0")
    a, b = connect(tmp_path), connect(tmp_path)
    try:
        assert isinstance(a.process, PluginProcess) and pid_of(a) != pid_of(b)
    finally:
        a.close()
        b.close()
    assert not (warm_plugins.root / "null" / f"run-{os.geteuid()}").exists()


# -- one worker, many sessions, nothing shared ----------------------------------------------
def test_sessions_share_the_worker_but_never_a_provider_instance_or_context(tmp_path, warm_plugins, monkeypatch):
    warm_plugins("null")
    preload(tmp_path, monkeypatch, COUNTING)
    a = connect(tmp_path, state="a.db", lineage="lin-a")
    b = connect(tmp_path, state="b.db", lineage="lin-b")  # open at the same time as a
    try:
        assert isinstance(a.process, warm.WarmSession)
        assert pid_of(a) == pid_of(b)
        a1, a2 = a.create(ROUTER, "router.x", {}), a.create(ROUTER, "router.x", {})
        b1 = b.create(ROUTER, "router.x", {})
        assert (a1["made"], a2["made"], b1["made"]) == (1, 2, 1)
        assert a1["instance"] == a2["instance"] != b1["instance"]
        assert (a1["state"], a1["lineage"]) == (str(tmp_path / "a.db"), "lin-a")
        assert (b1["state"], b1["lineage"]) == (str(tmp_path / "b.db"), "lin-b")
    finally:
        a.close()
        b.close()
    c = connect(tmp_path, state="a.db", lineage="lin-a")  # the same workspace again: a new instance
    try:
        assert pid_of(c) == pid_of(a) and c.create(ROUTER, "router.x", {})["made"] == 1
    finally:
        c.close()


def test_relative_context_paths_reach_the_worker_absolute(tmp_path, warm_plugins, monkeypatch):
    warm_plugins("null")
    preload(tmp_path, monkeypatch, COUNTING)
    monkeypatch.chdir(tmp_path)
    p = RemoteProvider.connect(NullProvider, ProviderContext(project_dir=Path("."), state_path=Path("rel.db"),
                                                             runtime_dir=Path("rt")), "null")
    try:
        assert p.create(ROUTER, "router.x", {})["state"] == str(tmp_path / "rel.db")
    finally:
        p.close()


def test_another_environment_or_preload_gets_another_worker(tmp_path, warm_plugins, monkeypatch):
    warm_plugins("null")
    p = connect(tmp_path)
    first = pid_of(p)
    p.close()
    monkeypatch.setenv("COLUMNS", "123")  # describes the terminal only: the same worker
    p = connect(tmp_path)
    assert pid_of(p) == first
    p.close()
    monkeypatch.setenv("HF_TOKEN", "other")  # the worker's SDK would read it: another worker
    p = connect(tmp_path)
    second = pid_of(p)
    p.close()
    preload(tmp_path, monkeypatch, "x = 1\n")
    p = connect(tmp_path)
    third = pid_of(p)
    p.close()
    assert len({first, second, third}) == 3
    assert sorted(e.status["pid"] for e in warm.workers(["null"])) == sorted([first, second, third])


# -- the protocol runs unchanged over the socket ---------------------------------------------
def test_a_hanging_call_is_cancelled_within_its_limit_and_the_session_still_serves(tmp_path, warm_plugins,
                                                                                 monkeypatch):
    warm_plugins("null")
    preload(tmp_path, monkeypatch, SLOW)
    p = connect(tmp_path)
    p.process.timeouts.update(create=0.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(ProviderTimeout, match="did not answer create within 0.5s"):
            p.create(ROUTER, "router.x", {})
        assert time.monotonic() - t0 < within(1.5)
        assert p.validate_settings() == []
    finally:
        t0 = time.monotonic()
        p.close()
    assert time.monotonic() - t0 < within(2.0)  # a cancelled call does not hold the session


# -- restarts, idle timeout, status and stop ---------------------------------------------------
def test_a_killed_worker_is_replaced_transparently(tmp_path, warm_plugins):
    warm_plugins("null")
    p = connect(tmp_path)
    killed = pid_of(p)
    sock = p.process.socket_path
    p.close()
    os.kill(killed, signal.SIGKILL)
    assert wait_gone(killed, within(2.0))
    assert sock.exists()  # stale: nobody removed it
    p = connect(tmp_path)
    try:
        assert pid_of(p) != killed and p.create(ROUTER, "router.x", {})["endpoint"] == "null://router.x"
    finally:
        p.close()


def test_a_worker_killed_during_a_session_fails_its_calls_in_one_line(tmp_path, warm_plugins):
    warm_plugins("null")
    p = connect(tmp_path)
    os.kill(pid_of(p), signal.SIGKILL)
    with pytest.raises(Exception) as info:
        p.create(ROUTER, "router.x", {})
    assert "warm plugin worker" in str(info.value) and "\n" not in str(info.value)
    p.close()


def test_an_idle_worker_stops_and_removes_its_socket(tmp_path, warm_plugins, monkeypatch):
    warm_plugins("null")
    monkeypatch.setenv("INFRAPLAN_PLUGIN_IDLE", "1")
    p = connect(tmp_path)
    pid, sock = pid_of(p), p.process.socket_path
    time.sleep(1.5)  # past the idle timeout, with a session open: it keeps serving
    assert p.create(ROUTER, "router.x", {})["endpoint"] == "null://router.x"
    p.close()
    assert wait_gone(pid, within(3.0)), "the worker outlived its idle timeout"
    assert not sock.exists()
    assert "idle for 1s, stopping" in (sock.with_suffix(".log")).read_text()


def test_plugins_status_and_stop(tmp_path, warm_plugins):
    warm_plugins("null")
    r = run("plugins", "status", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["workers"] == [] and json.loads(r.output)["keep_warm"] is True
    p = connect(tmp_path)
    pid = pid_of(p)
    p.close()
    r = run("plugins", "status")
    assert r.exit_code == 0 and f"pid {pid}" in r.output and "1 session served" in r.output
    (row,) = json.loads(run("plugins", "status", "--json").output)["workers"]
    assert (row["plugin"], row["pid"], row["sessions_served"], row["open_sessions"]) == ("null", pid, 1, 0)
    r = run("plugins", "stop")
    assert r.exit_code == 0 and f"pid {pid} stopped" in r.output
    assert gone(pid) and json.loads(run("plugins", "status", "--json").output)["workers"] == []
    r = run("plugins", "status", env={"INFRAPLAN_PLUGIN_KEEP": "maybe"})
    assert r.exit_code == 1 and "INFRAPLAN_PLUGIN_KEEP must be 1" in r.output and "Traceback" not in r.output


NULL_CONFIG = """\
provider:
  n: {type: "null", isolation: plugin}
model:
  m: {source: hf://org/m, revision: r1, served_name: m}
fleet:
  chat: {provider: n, model: model.m, replicas: 2}
"""


def test_a_plan_after_its_worker_was_killed_starts_a_new_one(tmp_path, warm_plugins):
    warm_plugins("null")
    (tmp_path / "main.yaml").write_text(NULL_CONFIG)
    args = ("plan", str(tmp_path), "--refresh=false", "--state", str(tmp_path / "s.db"), "--json")
    first = run(*args)
    assert first.exit_code == 0, first.output
    (entry,) = warm.workers(["null"])
    os.kill(entry.status["pid"], signal.SIGKILL)
    assert wait_gone(entry.status["pid"], within(2.0))
    again = run(*args)
    assert again.exit_code == 0, again.output
    strip = lambda out: {k: v for k, v in json.loads(out).items() if k != "created_at"}  # noqa: E731
    assert strip(again.output) == strip(first.output)
    (now,) = warm.workers(["null"])
    assert now.status["pid"] != entry.status["pid"]


# -- private: the folder, the socket, the peer's uid -----------------------------------------
def test_the_socket_is_private_to_its_user(tmp_path, warm_plugins):
    warm_plugins("null")
    p = connect(tmp_path)
    try:
        sock = p.process.socket_path
        assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert sock.parent.name == f"run-{os.geteuid()}" and sock.stat().st_uid == os.geteuid()
    finally:
        p.close()


NOBODY_CONNECTS = """\
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("denied"); sys.exit()
try:
    s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "$/status", "params": {}}\\n')
    print("answered" if s.makefile("rb").readline() else "closed")
except (ConnectionResetError, BrokenPipeError):
    print("closed")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_uid_cannot_reach_the_socket_nor_is_served_when_it_does(monkeypatch, warm_plugins, tmp_path):
    import pwd

    from helpers.plugins import install_plugin_venv

    nobody = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="ip-warm-"))  # /tmp: a path another user can walk to
    try:
        root.chmod(0o711)
        monkeypatch.setenv("INFRAPLAN_PLUGIN_DIR", str(root))
        install_plugin_venv(root, "null")
        p = connect(tmp_path)
        sock = p.process.socket_path

        def as_nobody() -> str:
            out = subprocess.run(["/usr/bin/env", "python3", "-I", "-c", NOBODY_CONNECTS, str(sock)],
                                 user=nobody.pw_uid, group=nobody.pw_gid, capture_output=True, text=True, timeout=30)
            return out.stdout.strip()

        try:
            assert as_nobody() == "denied"  # the 0700 folder
            sock.parent.chmod(0o711)  # opened up by hand: the worker still refuses the peer (SO_PEERCRED)
            sock.chmod(0o666)
            assert as_nobody() == "closed"
            assert f"refused a connection from uid {nobody.pw_uid}" in sock.with_suffix(".log").read_text()
            assert p.create(ROUTER, "router.x", {})["endpoint"] == "null://router.x"  # its own user is served
        finally:
            p.close()
            from helpers.fixtures import stop_warm_workers

            stop_warm_workers()
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_a_run_folder_of_another_user_is_refused(warm_plugins, tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a folder another user owns")
    warm_plugins("null")
    run_dir = warm_plugins.root / "null" / f"run-{os.geteuid()}"
    run_dir.mkdir(mode=0o700)
    os.chown(run_dir, 65534, 65534)
    try:
        with pytest.raises(ProviderUnavailable, match="is not a folder of yours"):
            connect(tmp_path)
        assert run("plugins", "status").output.count("is not a folder of yours") == 1
    finally:
        os.chown(run_dir, 0, 0)


def test_the_worker_runs_the_plugin_interpreter(tmp_path, warm_plugins):
    target = warm_plugins("null")
    p = connect(tmp_path)
    try:
        assert p.hello()["executable"] == str(target / "bin" / "python")
        assert psutil.Process(pid_of(p)).ppid() != os.getpid()  # detached: not this process's child
    finally:
        p.close()

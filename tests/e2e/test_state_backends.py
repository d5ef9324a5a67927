"""The end-to-end proofs on a PostgreSQL state, with the real CLI in subprocesses: the quick-start
lifecycle, `kill -9` of an apply at random moments and two applies at once (both also on an
SQLite file, through `state_location`), the database going away mid-apply, and the one-line
errors of a state that cannot be reached."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infraplan.state import open_store
from helpers import postgres
from helpers.timing import wait_for
from helpers.net import free_port
from helpers.paths import REPO
from helpers.timing import within

pytestmark = pytest.mark.e2e

NULL_FLEET = """
variable:
  replicas: {{type: number, default: 2}}
provider:
  slow:
    type: "null"
    settings: {{latency_ms: {latency_ms}}}
model:
  m:
    source: hf://org/tiny
    revision: abc1234
fleet:
  f:
    provider: slow
    model: model.m
    replicas: ${{var.replicas}}
"""


class StateProject:
    """A config directory whose state is at `url` (a PostgreSQL database or a file), given by
    $INFRAPLAN_STATE, or by the config's `backend:` block when `env_state` is False."""

    def __init__(self, path: Path, url: str, *, env_state: bool = True):
        self.path, self.url, self.env_state = path, url, env_state
        path.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict:
        env = dict(os.environ, NO_COLOR="1")
        env.pop("INFRAPLAN_STATE", None)
        if self.env_state:
            env["INFRAPLAN_STATE"] = self.url
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "infraplan", *args], cwd=self.path, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"infraplan {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "infraplan", *args], cwd=self.path, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def snapshot(self):
        with open_store(self.url, readonly=True) as store:
            return store.snapshot()

    def store(self):
        return open_store(self.url, readonly=True)


def _one_error_line(stderr: str) -> str:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


@pytest.fixture
def pg_quickstart(tmp_path, postgres_url):
    """examples/quickstart with a `backend:` block naming a throwaway database."""
    import shutil

    dst = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", dst, ignore=shutil.ignore_patterns("*.db*", ".infraplan"))
    (dst / "backend.yaml").write_text(f"backend:\n  url: {postgres_url}\n")
    project = StateProject(dst, postgres_url, env_state=False)
    yield project
    if project.snapshot().resources:
        project.run("destroy", "--auto-approve", check=False)


def test_quickstart_lifecycle_on_postgres(pg_quickstart, leftover_servers):
    p = pg_quickstart
    p.run("apply", "--auto-approve")
    assert not list(p.path.glob("*.db*"))  # the backend block put the state in the database, not a file
    snap = p.snapshot()
    reps = {r.address: r for r in snap.resources if r.kind == "replica"}
    assert sorted(reps) == ["fleet.chat[0]", "fleet.chat[1]"]
    endpoint = p.run("output", "--raw", "endpoint").stdout.strip()
    assert endpoint == reps["fleet.chat[0]"].attributes["endpoint"]
    assert httpx.get(f"{endpoint}/server_info").json()["revision"] == "0e9e39f"

    assert p.run("plan", "--detailed-exitcode", check=False).returncode == 0  # nothing to do
    assert "fleet.chat[1]" in p.run("state", "list").stdout
    assert "apply ok" in p.run("history").stdout
    check = p.run("state", "check", check=False)
    assert check.returncode == 1
    assert "a PostgreSQL database, whose server checks its own pages" in _one_error_line(check.stderr)

    p.run("destroy", "--auto-approve")
    assert [r for r in p.snapshot().resources if r.kind == "replica"] == []
    assert leftover_servers() == []
    with p.store() as store:
        assert [h.operation for h in store.history()] == ["destroy", "apply"]


def test_kill_9_of_an_apply_at_random_moments_loses_nothing(tmp_path, state_location):
    """Each round asks for 3 more replicas and kills the apply at a random moment; after each kill
    the state keeps every result it recorded, and the next plan creates exactly what is missing."""
    p = StateProject(tmp_path / "proj", state_location)
    (p.path / "main.yaml").write_text(NULL_FLEET.format(latency_ms=200))
    rng = random.Random(os.environ.get("INFRAPLAN_TEST_SEED", "kill-9"))
    kept: dict[str, str] = {}  # address -> id of every replica whose result was committed
    killed_mid_run = 0
    for round_ in range(1, 6):
        n = 3 * round_
        cli = p.popen("apply", "--auto-approve", "--parallelism", "2", "--var", f"replicas={n}")
        # a random moment of the run: from just after it took the lock to about when it ends
        wait_for(lambda: cli.poll() is not None or p.store().current_lock(), interval=0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        os.kill(cli.pid, signal.SIGKILL)
        cli.communicate(timeout=10)
        snap = p.snapshot()
        ready = {r.address: r.attributes["id"] for r in snap.resources
                 if r.kind == "replica" and r.status == "ready" and r.attributes.get("id")}
        assert {a: ready.get(a) for a in kept} == kept, "a recorded result was lost"
        kept = ready
        with p.store() as store:
            if store.current_lock() is not None:
                killed_mid_run += 1
                # stale: on PostgreSQL the server dropped the killed session's advisory lock
                assert store.current_lock().holder_gone()
        plan = p.run("plan", "--json", "--var", f"replicas={n}", check=False)
        assert plan.returncode in (0, 2), plan.stderr
        actions = {c["address"]: c["action"] for c in json.loads(plan.stdout)["changes"] if c["kind"] == "replica"}
        wanted = {f"fleet.f[{i}]" for i in range(n)}
        assert {a for a in wanted if actions.get(a) == "noop"} == set(ready) & wanted
        assert {a for a in wanted if actions.get(a) in ("create", "replace")} == wanted - set(ready)
    assert killed_mid_run >= 3  # the random moments did land inside runs
    applied = p.run("apply", "--auto-approve", "--var", "replicas=15")
    assert {r.address for r in p.snapshot().resources if r.kind == "replica" and r.status == "ready"} == \
        {f"fleet.f[{i}]" for i in range(15)}
    assert all(p.snapshot().get(a).attributes["id"] == i for a, i in kept.items() if a in
               {f"fleet.f[{i}]" for i in range(15)})
    assert "Traceback" not in applied.stderr
    assert p.run("plan", "--detailed-exitcode", "--var", "replicas=15", check=False).returncode == 0
    with p.store() as store:
        assert store.current_lock() is None
        assert all(h.status != "running" for h in store.history())


def test_a_second_apply_fails_at_once_naming_the_holder(tmp_path, state_location):
    p = StateProject(tmp_path / "proj", state_location)
    (p.path / "main.yaml").write_text(NULL_FLEET.format(latency_ms=1500))
    first = p.popen("apply", "--auto-approve", "--var", "replicas=1")
    try:
        lock = wait_for(lambda: p.store().current_lock())
        t0 = time.monotonic()
        for args in (("apply", "--auto-approve"), ("destroy", "--auto-approve"), ("taint", "model.m")):
            second = p.run(*args, check=False)
            assert second.returncode == 1
            line = _one_error_line(second.stderr)
            assert f"locked by {lock.who} (pid {first.pid} on {lock.host}) for apply since {lock.since}" in line
        assert time.monotonic() - t0 < within(6)
        assert p.run("state", "list").returncode == 0  # reading needs no lock
    finally:
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert p.store().current_lock() is None


def test_the_database_going_away_mid_apply_is_one_line_and_the_next_apply_recovers(tmp_path, postgres_url):
    p = StateProject(tmp_path / "proj", postgres_url)
    (p.path / "main.yaml").write_text(NULL_FLEET.format(latency_ms=300))
    cli = p.popen("apply", "--auto-approve", "--parallelism", "1", "--var", "replicas=4")
    wait_for(lambda: any(r.status == "ready" for r in p.snapshot().resources if r.kind == "replica"))
    postgres.end_sessions(postgres_url)  # as a server restart would
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 1, out + err
    line = _one_error_line(err)
    assert f"lost the connection to the state database {postgres_url}" in line
    ready = {r.address for r in p.snapshot().resources if r.kind == "replica" and r.status == "ready"}
    assert ready and len(ready) < 4
    again = p.run("apply", "--auto-approve", "--var", "replicas=4")
    assert "Note: broke the stale state lock" in again.stderr and "its database session ended" in again.stderr
    assert p.run("plan", "--detailed-exitcode", "--var", "replicas=4", check=False).returncode == 0
    with p.store() as store:
        assert store.history()[-1].status == "interrupted"


def test_an_unreachable_state_is_one_line_without_the_password(tmp_path):
    url = f"postgresql://root:hunter2@127.0.0.1:{free_port()}/nowhere"
    p = StateProject(tmp_path / "proj", url)
    (p.path / "main.yaml").write_text(NULL_FLEET.format(latency_ms=0))
    for args in (("plan",), ("apply", "--auto-approve"), ("state", "list"), ("force-unlock", "x", "--force")):
        res = p.run(*args, check=False)
        assert res.returncode == 1
        line = _one_error_line(res.stderr)
        assert line.startswith("Error: cannot connect to the state database postgresql://root:***@127.0.0.1:")
        assert "hunter2" not in res.stdout + res.stderr

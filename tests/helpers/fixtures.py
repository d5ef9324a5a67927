"""Fixtures shared across test folders (registered by tests/conftest.py through `pytest_plugins`)."""

from __future__ import annotations

import os

import psutil
import pytest

from helpers.drift import make_fleet, webhook
from helpers.rollout import Fleet as RolloutFleet


@pytest.fixture
def rollout_fleet(tmp_path, leftover_servers):
    """Makes rollout fleets of `n` simulator replicas; cleans them up and fails on leftovers."""
    made: list[RolloutFleet] = []

    def make(n: int) -> RolloutFleet:
        f = RolloutFleet(tmp_path / f"f{len(made)}", n)
        made.append(f)
        return f

    yield make
    for f in made:
        f.cleanup()
    assert not leftover_servers()

def _smg_processes() -> list[psutil.Process]:
    run = os.environ.get("INFRAPLAN_TEST_RUN")
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            env = p.environ()
            if run and env.get("INFRAPLAN_TEST_RUN") == run and "smg" in " ".join(p.cmdline()) \
                    and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture
def leftover_routers():
    """Lists this run's live smg processes; kills any left when the test ends, and fails it."""
    before = {p.pid for p in _smg_processes()}
    yield lambda: [p for p in _smg_processes() if p.pid not in before]
    left = [p for p in _smg_processes() if p.pid not in before]
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    assert not left, f"the test left smg processes behind: {[p.pid for p in left]}"


@pytest.fixture
def plugin_venv(tmp_path, monkeypatch):
    """``install(NAME)``: a plugin for provider NAME under a temporary INFRAPLAN_PLUGIN_DIR (``install.root``)."""
    from helpers.plugins import install_plugin_venv

    root = tmp_path / "plugins"
    monkeypatch.setenv("INFRAPLAN_PLUGIN_DIR", str(root))

    def install(name: str):
        return install_plugin_venv(root, name)

    install.root = root  # type: ignore[attr-defined]
    return install


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL database for this test (helpers.postgres); skipped, saying where it
    looked, when no server answers (a skip CI fails: helpers.ci_skips)."""
    from helpers import postgres

    if postgres.admin_url() is None:
        pytest.skip(postgres.skip_reason())
    with postgres.throwaway_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def state_location(request, tmp_path):
    """A fresh state's location on each backend: an SQLite file, then a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
    else:
        yield request.getfixturevalue("postgres_url")


def stop_warm_workers() -> list[int]:
    """Stop every warm plugin worker under the current INFRAPLAN_PLUGIN_DIR (SIGKILL what does not stop): their pids."""
    from infraplan.providers.plugin import warm

    pids = []
    for entry, result in warm.stop(wait_s=5):
        pid = (entry.status or {}).get("pid")
        if pid:
            pids.append(pid)
        if pid and result == "stopping":
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
    return pids


@pytest.fixture
def warm_plugins(plugin_venv, monkeypatch):
    """`plugin_venv` with warm workers (INFRAPLAN_PLUGIN_KEEP=1, a 60 s idle timeout), all stopped after the test."""
    monkeypatch.setenv("INFRAPLAN_PLUGIN_KEEP", "1")
    monkeypatch.setenv("INFRAPLAN_PLUGIN_IDLE", "60")
    monkeypatch.delenv("CI", raising=False)
    yield plugin_venv
    stop_warm_workers()

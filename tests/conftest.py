"""Shared fixtures (more in helpers.fixtures). Every server process a test starts inherits INFRAPLAN_TEST_RUN, so the
session can make sure none is left behind, even when a test fails half-way."""

from __future__ import annotations

import os
import signal
import uuid

import psutil
import pytest

# helpers.ci_skips: with INFRAPLAN_CI=1 (.ci/run) a skip fails unless it is by design (its ALLOWED list)
pytest_plugins = ["helpers.fixtures", "helpers.ci_skips"]

RUN_ID = uuid.uuid4().hex
os.environ["INFRAPLAN_TEST_RUN"] = RUN_ID
# plugin workers live for one command unless a test asks for a warm one (helpers.fixtures.warm_plugins):
# a warm worker would outlive the test, and the wire tests read a one-shot worker's stdin/stdout
os.environ["INFRAPLAN_PLUGIN_KEEP"] = "0"


def _our_processes() -> list[psutil.Process]:
    me = os.getpid()
    found = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get("INFRAPLAN_TEST_RUN") == RUN_ID and "sim" in " ".join(p.cmdline()):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture(scope="session", autouse=True)
def no_leftover_servers():
    yield
    left = _our_processes()
    for p in left:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    assert not left, f"tests left server processes behind: {[p.pid for p in left]}"


@pytest.fixture
def leftover_servers():
    """A callable listing server processes started by this test run that are still alive."""
    return lambda: [p for p in _our_processes() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


AXIS = {"unit": None, "golden": None, "project": None, "contract": "contract", "e2e": "e2e"}


def pytest_collection_modifyitems(config, items):
    """The folder is the test's kind: tests/e2e/** are `e2e`, tests/contract/** are `contract` (``-m``)."""
    root = config.rootpath / "tests"
    for item in items:
        parts = item.path.relative_to(root).parts
        marker = AXIS.get(parts[0]) if len(parts) > 1 else None
        if marker:
            item.add_marker(marker)

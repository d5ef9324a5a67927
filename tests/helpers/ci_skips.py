"""CI fails a skipped test (pytest plugin, registered by tests/conftest.py; on with INFRAPLAN_CI=1).

A test that skips because something it needs is missing (a package of the test extras, the
skypilot plugin, the shared catalogs) would pass CI without running; with INFRAPLAN_CI=1 every
skip is a failure unless it is one of `ALLOWED`, the skips that are by design.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class AllowedSkip:
    """A skip CI accepts: of a test carrying `marker` (None: any test) whose reason matches `reason`."""

    marker: str | None
    reason: str  # a regular expression, searched in the skip's reason
    why: str

    def allows(self, markers: set[str], reason: str) -> bool:
        return (self.marker is None or self.marker in markers) and re.search(self.reason, reason) is not None


ALLOWED = (
    # against real clouds or a real SGLang server: they need credentials, cost money and are opt-in
    # (INFRAPLAN_LIVE_SKYPILOT=1, INFRAPLAN_LIVE_SGLANG_URL)
    AllowedSkip("live", r"", "opt-in live test"),
    # `pip download` of SGLang's wheels: the registry may be down, which says nothing of the code
    AllowedSkip("registry", r"package registry is unreachable", "package registry unreachable"),
    # SGLang itself (the `sglang` extra, with torch) is no test dependency: the committed parser
    # snapshots are checked against the release wheels by the `registry` test instead
    AllowedSkip(None, r"could not import 'sglang\.srt\.server_args'", "SGLang is not installed"),
    # acting as another user (the warm plugin worker refusing other uids) needs root; the 0600/0700 part runs anyway
    AllowedSkip(None, r"^needs root to ", "not root"),
)


def enabled() -> bool:
    return os.environ.get("INFRAPLAN_CI") == "1"


def _reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _allowed(markers: set[str], reason: str) -> bool:
    return any(a.allows(markers, reason) for a in ALLOWED)


def _fail(report, reason: str) -> None:
    report.outcome = "failed"
    report.longrepr = (f"skipped in CI (INFRAPLAN_CI=1), which installs everything the tests need: {reason}\n"
                       "install what is missing, or add the skip to ALLOWED in tests/helpers/ci_skips.py "
                       "if it is by design")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not enabled() or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _reason(report.longrepr)
    if not _allowed({m.name for m in item.iter_markers()}, reason):
        _fail(report, reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module that skips as a whole (``pytest.importorskip`` at its top) is no test item."""
    outcome = yield
    report = outcome.get_result()
    if not enabled() or not report.skipped:
        return
    reason = _reason(report.longrepr)
    if not _allowed({m.name for m in collector.iter_markers()}, reason):
        _fail(report, reason)

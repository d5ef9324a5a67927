"""CI fails a test that skips for something it should have installed (helpers.ci_skips), and lets
the skips that are by design through; `.ci/run` turns it on for both of its pytest steps."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from helpers.paths import REPO, TESTS

SKIPPING = '''\
import pytest


def test_needs_a_package_that_is_missing():
    pytest.importorskip("no_such_package_for_infraplan")


@pytest.mark.skipif(True, reason="skypilot plugin not installed")
def test_needs_the_plugin():
    pass


@pytest.mark.registry
def test_registry_skips_for_another_reason():
    pytest.skip("no wheel for this platform")


@pytest.mark.live
def test_live_without_credentials():
    pytest.skip("set INFRAPLAN_LIVE_X=1")


@pytest.mark.registry
def test_registry_is_down():
    pytest.skip("the package registry is unreachable (pip download sglang==0.5.23): timed out")


def test_sglang_is_no_test_dependency():
    pytest.skip("could not import 'sglang.srt.server_args': No module named 'sglang'")


@pytest.mark.xfail(reason="a known bug", strict=True)
def test_known_bug():
    assert False


def test_runs():
    pass
'''


def _run(tmp_path, ci: bool) -> tuple[dict[str, str], str]:
    """Each test's outcome in a pytest run with helpers.ci_skips, and the output."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    live: x\n    registry: x\n")
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    (tmp_path / "test_module_skip.py").write_text('import pytest\n\npytest.importorskip("no_such_package_for_infraplan")\n')
    env = {k: v for k, v in os.environ.items() if k not in ("INFRAPLAN_CI", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(TESTS), **({"INFRAPLAN_CI": "1"} if ci else {}))
    xml = tmp_path / "out.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "helpers.ci_skips",
                           "-p", "no:xdist", "--continue-on-collection-errors", f"--junitxml={xml}", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    outcomes = {}
    for case in ET.parse(xml).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name") or case.get("classname")] = kinds[0] if kinds else "passed"
    return outcomes, proc.stdout + proc.stderr


def test_in_ci_a_skip_for_something_missing_fails_and_by_design_skips_pass(tmp_path):
    got, out = _run(tmp_path, ci=True)
    # a skip in the call is a failed test, in the setup (skipif) an error, at collection a collection error
    assert got == {"test_needs_a_package_that_is_missing": "failure", "test_needs_the_plugin": "error",
                   "test_registry_skips_for_another_reason": "failure", "test_live_without_credentials": "skipped",
                   "test_registry_is_down": "skipped", "test_sglang_is_no_test_dependency": "skipped",
                   "test_known_bug": "skipped", "test_runs": "passed", "test_module_skip": "error"}, out
    assert "skipped in CI (INFRAPLAN_CI=1), which installs everything the tests need: skypilot plugin not " \
           "installed" in out
    assert "could not import 'no_such_package_for_infraplan'" in out  # the module skipped as a whole


def test_outside_ci_skips_are_skips(tmp_path):
    got, out = _run(tmp_path, ci=False)
    assert got == {name: "passed" if name == "test_runs" else "skipped" for name in got} and len(got) == 9, out


def test_ci_turns_it_on_for_both_pytest_steps():
    run = (REPO / ".ci" / "run").read_text()
    assert run.count("python -m pytest") == run.count("INFRAPLAN_CI=1 python -m pytest") == 2, run
    assert "helpers.ci_skips" in (TESTS / "conftest.py").read_text()

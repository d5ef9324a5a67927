"""`providers` and `plugins list` say a provider whose SDK is missing here and whose plugin is
not installed cannot run, instead of calling it available / in-process."""

from __future__ import annotations

import json
import sys

import pytest

from helpers.cli import run

HINT = "not installed (run: infraplan plugins install skypilot)"


@pytest.fixture
def no_sky(tmp_path, monkeypatch):
    """SkyPilot importable nowhere: an empty plugin dir, and `import sky` blocked here."""
    root = tmp_path / "plugins"
    root.mkdir()
    monkeypatch.setenv("INFRAPLAN_PLUGIN_DIR", str(root))
    monkeypatch.setitem(sys.modules, "sky", None)
    return root


def test_providers_says_skypilot_is_not_installed(no_sky):
    result = run("providers")
    assert result.exit_code == 0, result.output
    assert f"skypilot: {HINT}" in result.output.splitlines()
    assert "local: available" in result.output.splitlines()
    rows = {r["name"]: r for r in json.loads(run("providers", "--json").stdout)}
    assert rows["skypilot"] == {"name": "skypilot", "available": False, "detail": HINT}


def test_plugins_list_says_skypilot_is_not_installed(no_sky):
    result = run("plugins", "list")
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("skypilot"))
    assert line.split(None, 1)[1] == HINT
    rows = {r["name"]: r for r in json.loads(run("plugins", "list", "--json").stdout)}
    assert rows["skypilot"]["runs"] == "not-installed" and rows["skypilot"]["plugin_installed"] is False
    assert rows["local"]["runs"] == "in-process"


def test_an_installed_plugin_is_listed_as_the_plugin(no_sky):
    python = no_sky / "skypilot" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert "skypilot: available" in run("providers").output.splitlines()
    line = next(ln for ln in run("plugins", "list").output.splitlines() if ln.startswith("skypilot"))
    assert line.split()[1] == "plugin" and f"installed at {no_sky / 'skypilot'}" in line

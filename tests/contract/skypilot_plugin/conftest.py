"""Fixtures of the skypilot plugin tests: SkyPilot's environment over the shared catalogs, per
test or once per module, and one plugin interpreter per module (helpers.skypilot_plugin)."""

from __future__ import annotations

import pytest

from helpers.skypilot_plugin import PluginSession, sky_environment


@pytest.fixture
def sky_env(tmp_path, monkeypatch):
    """SkyPilot's environment in this process, for the plugin processes a test starts to inherit."""
    env = sky_environment(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("skypilot")


@pytest.fixture(scope="module")
def sky_module_env(module_dir):
    """SkyPilot's environment for the module's workers (passed to them; this process keeps its own)."""
    return sky_environment(module_dir)


@pytest.fixture(scope="module")
def plugin_session(sky_module_env, module_dir):
    session = PluginSession(sky_module_env, module_dir / "session.log")
    yield session
    session.close()

"""Fixtures of the in-process SkyPilot tests (SkyPilot itself prepared by helpers.sky_offline)."""

from __future__ import annotations

import pytest

from helpers.sky_offline import sky  # noqa: F401 - imports SkyPilot offline, or skips the folder


@pytest.fixture
def offline_clouds(monkeypatch):
    """The optimizer sees AWS, GCP, Lambda and RunPod as enabled."""
    from sky import clouds

    enabled = [clouds.AWS(), clouds.GCP(), clouds.Lambda(), clouds.RunPod()]
    monkeypatch.setattr("sky.check.get_cached_enabled_clouds_or_refresh", lambda *a, **k: enabled)
    return enabled


@pytest.fixture
def fake(monkeypatch):
    """SkyPilot's SDK replaced at the narrow client's boundary by a fake returning real types."""
    from infraplan_providers.skypilot import client as client_mod

    from helpers.fake_sky import FakeSky

    f = FakeSky()
    monkeypatch.setattr(client_mod, "sdk", lambda: f)
    return f

"""Opt-in live tests against a real cloud: INFRAPLAN_LIVE_SKYPILOT=1 (costs money); SkyPilot runs
in its plugin (`infraplan plugins install skypilot`), with this machine's credentials."""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.live, pytest.mark.skipif(os.environ.get("INFRAPLAN_LIVE_SKYPILOT") != "1",
                                                   reason="set INFRAPLAN_LIVE_SKYPILOT=1 to run live SkyPilot tests")]


def test_cluster_launch_status_down_on_a_cheap_cpu_vm(tmp_path):
    from infraplan.providers.contract import ProviderContext, ResourceKind
    from infraplan.providers.plugin.host import RemoteProvider
    from infraplan_providers.skypilot.provider import SkyPilotProvider

    ctx = ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path,
                          settings={"idle_minutes_to_autostop": 10, "name_prefix": "infraplan-live"})
    p = RemoteProvider.connect(SkyPilotProvider, ctx, "skypilot")  # SkyPilot cannot be imported here
    attrs = {"fleet": "fleet.live", "index": 0, "model_source": "hf://Qwen/Qwen2.5-0.5B-Instruct",
             "instance_type": os.environ.get("INFRAPLAN_LIVE_INSTANCE", "m6i.xlarge"),
             "cloud": os.environ.get("INFRAPLAN_LIVE_CLOUD", "aws"), "args": {}}
    try:
        out = p.create(ResourceKind.REPLICA, "fleet.live[0]", attrs)
        try:
            assert p.read(ResourceKind.REPLICA, "fleet.live[0]", out).exists
        finally:
            p.delete(ResourceKind.REPLICA, "fleet.live[0]", out)
        assert not p.read(ResourceKind.REPLICA, "fleet.live[0]", out).exists
    finally:
        p.close()

"""Cluster placement through the plugin worker, SkyPilot's SDK faked inside it (returning its
real types): what the provider asks SkyPilot for, how it reads the answers, how SkyPilot's
errors reach the engine. One worker for the module; the fake is reset for each test."""

from __future__ import annotations

import pytest

from infraplan.providers.contract import ReadResult, ResourceKind
from infraplan_providers.skypilot.client import NoCapacity, NoCloudAccess

from helpers.skypilot_plugin import NEEDS_PLUGIN, faked_worker

pytestmark = NEEDS_PLUGIN

REPLICA = ResourceKind.REPLICA
ADDRESS = "fleet.chat[1]"
ATTRS = {"fleet": "fleet.chat", "index": 1, "model_source": "hf://org/m", "model_revision": "r1",
         "served_name": "m", "accelerators": "H100:8", "cloud": "aws", "region": "us-east-1", "args": {}}


@pytest.fixture(scope="module")
def worker(module_dir, sky_module_env):
    with faked_worker(module_dir, sky_module_env, idle_minutes_to_autostop=30) as w:
        yield w


@pytest.fixture
def sky(worker):
    provider, fake = worker
    fake.reset()
    return provider, fake


def test_a_cluster_is_launched_read_stopped_and_torn_down(sky):
    p, fake = sky
    assert p.hello()["versions"]["skypilot"].startswith("0.14.")
    out = p.create(REPLICA, ADDRESS, dict(ATTRS))
    assert out["cluster_name"] == "infraplan-chat-1" and out["endpoint"] == "http://3.1.2.3:30000"
    assert (out["cloud_chosen"], out["region_chosen"], out["instance_type_chosen"]) == \
        ("aws", "us-east-1", "p5.48xlarge")
    (launch,) = fake.calls("launch")
    assert (launch["cluster"], launch["idle_minutes_to_autostop"]) == ("infraplan-chat-1", 30)
    assert launch["task"]["class"] == "sky.task.Task"  # SkyPilot's own task object, not a YAML string
    got = p.read(REPLICA, ADDRESS, out)
    assert isinstance(got, ReadResult) and got.exists and got.healthy and got.attributes["status"] == "running"
    assert fake.calls("status")[-1]["clusters"] == ["infraplan-chat-1"]
    assert fake.calls("status")[-1]["refresh"].endswith("StatusRefreshMode.FORCE")  # asks the cloud, not a cache
    fake.send(cluster_status=["infraplan-chat-1", "STOPPED"])
    got = p.read(REPLICA, ADDRESS, out)
    assert got.exists and got.healthy is False and got.attributes["status"] == "stopped"
    p.delete(REPLICA, ADDRESS, out)
    assert not p.read(REPLICA, ADDRESS, out).exists
    p.delete(REPLICA, ADDRESS, out)  # already gone (SkyPilot's ClusterDoesNotExist): success
    assert [c["cluster"] for c in fake.calls("down")] == ["infraplan-chat-1"] * 2


def test_skypilots_errors_reach_the_engine_as_infraplan_errors(sky):
    p, fake = sky
    fake.fail_next("ResourcesUnavailableError", "Failed to provision all possible launchable resources.",
                   failover_history=[{"error": "ResourcesUnavailableError",
                                      "message": "AWS us-east-1: InsufficientInstanceCapacity"}])
    with pytest.raises(NoCapacity, match="InsufficientInstanceCapacity") as info:
        p.create(REPLICA, ADDRESS, dict(ATTRS))
    assert len(info.value.failover_history) == 1
    fake.fail_next("NoCloudAccessError", "Cloud access is not set up.")
    with pytest.raises(NoCloudAccess, match="sky check"):
        p.create(REPLICA, ADDRESS, dict(ATTRS))

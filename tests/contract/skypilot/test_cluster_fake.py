"""Cluster placement through SkyClient, with a fake SDK that returns SkyPilot's real types."""

from __future__ import annotations

import pytest

from infraplan.errors import ResourceNotFound, TransientProviderError
from infraplan.providers.contract import ProviderContext
from infraplan_providers.skypilot.client import NoCapacity, NoCloudAccess, SkyClient, map_status, REPLICA_STATUS
from infraplan_providers.skypilot.provider import SkyPilotProvider
from infraplan.models.kinds import ResourceKind

from helpers.sky_offline import sky


@pytest.fixture
def provider(tmp_path, fake):
    ctx = ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path,
                          settings={"idle_minutes_to_autostop": 30})
    return SkyPilotProvider(ctx, client=SkyClient(timeout_s=5))


ATTRS = {"fleet": "fleet.chat", "index": 1, "model_source": "hf://org/m", "model_revision": "r1",
         "served_name": "m", "accelerators": "H100:8", "cloud": "aws", "region": "us-east-1", "args": {}}


def test_create_read_delete(provider, fake):
    out = provider.create(ResourceKind.REPLICA, "fleet.chat[1]", dict(ATTRS))
    assert out["cluster_name"] == "infraplan-chat-1"
    assert out["endpoint"] == "http://3.1.2.3:30000"
    assert (out["cloud_chosen"], out["region_chosen"], out["instance_type_chosen"]) == ("aws", "us-east-1", "p5.48xlarge")
    launch = fake.calls[0]
    assert launch[:3] == ("launch", "infraplan-chat-1", 30) and isinstance(launch[3], sky.Task)
    r = provider.read(ResourceKind.REPLICA, "fleet.chat[1]", out)
    assert r.exists and r.healthy and r.attributes["status"] == "running"
    assert ("status", ("infraplan-chat-1",), sky.StatusRefreshMode.FORCE) in fake.calls
    fake.clusters["infraplan-chat-1"].status = sky.ClusterStatus.STOPPED
    r = provider.read(ResourceKind.REPLICA, "fleet.chat[1]", out)
    assert r.exists and r.healthy is False and r.attributes["status"] == "stopped"
    provider.delete(ResourceKind.REPLICA, "fleet.chat[1]", out)
    assert not provider.read(ResourceKind.REPLICA, "fleet.chat[1]", out).exists
    provider.delete(ResourceKind.REPLICA, "fleet.chat[1]", out)  # already gone: success


def test_errors_are_translated(provider, fake):
    history = [sky.exceptions.ResourcesUnavailableError("AWS us-east-1: InsufficientInstanceCapacity")]
    fake.fail_next = [sky.exceptions.ResourcesUnavailableError("Failed to provision all possible launchable "
                                                               "resources.", failover_history=history)]
    with pytest.raises(NoCapacity, match="InsufficientInstanceCapacity") as info:
        provider.create(ResourceKind.REPLICA, "fleet.chat[1]", dict(ATTRS))
    assert len(info.value.failover_history) == 1
    fake.fail_next = [sky.exceptions.NoCloudAccessError("Cloud access is not set up.")]
    with pytest.raises(NoCloudAccess, match="sky check"):
        provider.create(ResourceKind.REPLICA, "fleet.chat[1]", dict(ATTRS))
    with pytest.raises(ResourceNotFound):
        provider.client._call("down", "nope")


def test_transient_errors_are_raised_once_for_the_engine_to_retry(provider, fake):
    fake.fail_next = [sky.exceptions.ApiServerConnectionError("http://127.0.0.1:46580")]
    with pytest.raises(TransientProviderError):
        provider.create(ResourceKind.REPLICA, "fleet.chat[1]", dict(ATTRS))
    assert [c[0] for c in fake.calls].count("launch") == 1


def test_status_maps_use_the_real_enums():
    from sky.serve import ReplicaStatus, ServiceStatus

    from infraplan_providers.skypilot.client import CLUSTER_STATUS, SERVICE_STATUS

    assert {s.value for s in sky.ClusterStatus} <= set(CLUSTER_STATUS)
    assert {s.value for s in ServiceStatus} <= set(SERVICE_STATUS)
    assert {s.value for s in ReplicaStatus} <= set(REPLICA_STATUS)
    assert map_status(REPLICA_STATUS, ReplicaStatus.READY) == "running"

"""What the skypilot provider builds and reads, checked against SkyPilot 0.14's own classes,
enums and validation, in one plugin-venv interpreter per module (`PluginSession`)."""

from __future__ import annotations

import pytest

from helpers.skypilot_plugin import NEEDS_PLUGIN

pytestmark = NEEDS_PLUGIN

ATTRS = {"fleet": "fleet.chat", "index": 0, "model_source": "hf://meta-llama/Llama-3.1-70B-Instruct",
         "model_revision": "abc1234", "served_name": "llama-70b", "accelerators": "H100:8",
         "args": {"tp_size": 8, "context_length": 8192}, "env": {"LOG_LEVEL": "info"}}


def test_failover_and_spot_fallback_become_an_ordered_resources_list(plugin_session):
    got = plugin_session.run("""
        import sky
        from infraplan_providers.skypilot.settings import SkyPilotSettings
        from infraplan_providers.skypilot.translate import make_resources, make_task
        S = SkyPilotSettings()
        attrs = dict(attrs, failover=["aws/us-east-1", "gcp/us-central1"], use_spot=True, spot_fallback=True,
                     disk_size=500)
        res = make_resources(attrs, S)
        task = make_task("c", attrs, S)
        result = {"real": all(isinstance(r, sky.Resources) for r in res),
                  "order": [(str(r.cloud), r.region, r.use_spot) for r in res],
                  "disks": sorted({r.disk_size for r in res}), "accelerators": res[0].accelerators,
                  "ports": res[0].ports, "port": S.port,
                  "task": [isinstance(task.resources, list), len(task.resources)]}
    """, attrs=ATTRS)
    assert got["real"]
    assert got["order"] == [["AWS", "us-east-1", True], ["GCP", "us-central1", True],
                            ["AWS", "us-east-1", False], ["GCP", "us-central1", False]]
    assert got["disks"] == [500] and got["accelerators"] == {"H100": 8} and got["ports"] == [str(got["port"])]
    assert got["task"] == [True, 4]  # ordered, not any_of


def test_task_runs_sglang_with_mapped_args_and_secrets_only_from_env(plugin_session):
    got = plugin_session.run("""
        import os
        from infraplan_providers.skypilot.settings import SkyPilotSettings
        from infraplan_providers.skypilot.translate import make_task
        S = SkyPilotSettings()
        os.environ["HF_TOKEN"] = "hf_secret_value"
        try:
            task = make_task("infraplan-chat-0", dict(attrs, cloud="aws"), S, with_secrets=True)
            plain = make_task("p", dict(attrs, cloud="aws"), S)
        finally:
            del os.environ["HF_TOKEN"]
        secret = task.secrets["HF_TOKEN"]
        result = {"run": task.run, "setup": task.setup, "envs": task.envs, "version": S.sglang_version,
                  "secret": secret.get_secret_value(), "shown": repr(task.secrets), "plain": bool(plain.secrets)}
    """, attrs=ATTRS)
    assert "python -m sglang.launch_server --model-path meta-llama/Llama-3.1-70B-Instruct" in got["run"]
    assert "--tp-size 8" in got["run"] and "--context-length 8192" in got["run"] and "--port 30000" in got["run"]
    assert f"sglang[all]=={got['version']}" in got["setup"]
    assert got["envs"] == {"LOG_LEVEL": "info"}
    assert got["secret"] == "hf_secret_value"  # SkyPilot keeps it a SecretStr
    assert "hf_secret_value" not in got["shown"] and "hf_secret_value" not in got["run"]
    assert not got["plain"]


def test_status_maps_cover_skypilots_own_enums(plugin_session):
    got = plugin_session.run("""
        import sky
        from sky.serve import ReplicaStatus, ServiceStatus
        from infraplan_providers.skypilot.client import (CLUSTER_STATUS, REPLICA_STATUS, SERVICE_STATUS,
                                                         map_status)
        result = {"cluster": sorted({s.value for s in sky.ClusterStatus} - set(CLUSTER_STATUS)),
                  "service": sorted({s.value for s in ServiceStatus} - set(SERVICE_STATUS)),
                  "replica": sorted({s.value for s in ReplicaStatus} - set(REPLICA_STATUS)),
                  "ready": map_status(REPLICA_STATUS, ReplicaStatus.READY)}
    """)
    assert got == {"cluster": [], "service": [], "replica": [], "ready": "running"}


def test_the_provider_prices_one_fleet_shape_once(plugin_session, tmp_path):
    got = plugin_session.run("""
        from pathlib import Path
        import infraplan_providers.skypilot.pricing as pricing
        from infraplan.providers.contract import ProviderContext, ResourceKind
        from infraplan_providers.skypilot.provider import SkyPilotProvider
        tmp = Path(tmp)
        p = SkyPilotProvider(ProviderContext(project_dir=tmp, state_path=tmp / "s.db", runtime_dir=tmp))
        calls, real = [], pricing.estimate
        pricing.estimate = lambda a, s: calls.append(1) or real(a, s)
        try:
            a = p.estimate(ResourceKind.REPLICA, dict(attrs, cloud="aws", region="us-east-1"))
            b = p.estimate(ResourceKind.REPLICA, dict(attrs, cloud="aws", region="us-east-1", index=7))
        finally:
            pricing.estimate = real
        result = {"same": a == b, "priced": len(calls)}
    """, attrs=ATTRS, tmp=str(tmp_path))
    assert got == {"same": True, "priced": 1}


def test_runpod_gpu_memory_is_read_in_gb_not_as_a_thousandth(plugin_session):
    """SkyPilot reports RunPod's H100 as 0.078 GiB; the fit check then refused models that fit."""
    runpod, aws = plugin_session.run("""
        from infraplan_providers.skypilot.pricing import gpu_memory
        result = [gpu_memory("runpod", {"H100": 8}), gpu_memory("aws", {"H100": 8})]
    """)
    assert runpod == pytest.approx(80.0) and aws == pytest.approx(80.0)


def test_skyserve_spot_with_fallback_passes_skyservices_own_validation(plugin_session):
    """`sky serve up` refuses a mixed spot/on-demand list ("Resources must either all use spot or
    none use spot"); SkyServe's answer is `dynamic_ondemand_fallback` in its replica policy."""
    got = plugin_session.run("""
        from infraplan_providers.skypilot.service import make_service_task
        from infraplan_providers.skypilot.settings import SkyPilotSettings
        attrs = {"placement": "service", "accelerators": "H100:8", "use_spot": True, "spot_fallback": True,
                 "failover": ["aws/us-east-1", "gcp"], "model_source": "hf://org/m", "engine": "sglang", "args": {}}
        task = make_service_task("chat", attrs, SkyPilotSettings(), 2)
        result = {"spots": sorted({r.use_spot for r in task.resources}),
                  "fallback": task.service.dynamic_ondemand_fallback, "min": task.service.min_replicas}
    """)
    assert got == {"spots": [True], "fallback": True, "min": 2}


LINEAGE = "5f1c0d2e9a7b4c3d8e6f0a1b2c3d4e5f"


def test_clusters_routers_and_services_carry_project_labels_that_skypilot_accepts(plugin_session):
    """The tasks the provider builds carry `infraplan-lineage` and a label-safe `infraplan-address` on
    every resource candidate, and SkyPilot's own validation (`Resources.validate`, each cloud's label
    rules) accepts them, even for an address no cloud would take as it is."""
    out = plugin_session.run("""
        from pathlib import Path
        from sky.utils import registry
        from infraplan.providers.contract import ProviderContext
        from infraplan_providers.skypilot import router
        from infraplan_providers.skypilot.provider import SkyPilotProvider
        from infraplan_providers.skypilot.service import make_service_task
        from infraplan_providers.skypilot.translate import make_task
        p = SkyPilotProvider(ProviderContext(project_dir=Path("."), state_path=Path("s.db"), runtime_dir=Path("."),
                                             lineage=lineage))
        odd = 'fleet.Chat["us-east/1"][12]' + "x" * 80
        attrs = {"fleet": "fleet.chat", "index": 1, "accelerators": "H100:8", "failover": ["aws/us-east-1", "gcp"],
                 "model_source": "hf://org/m", "args": {}}
        tasks = {"cluster": make_task("c", attrs, p.settings, labels=p.labels("fleet.chat[1]")),
                 "odd": make_task("c", attrs, p.settings, labels=p.labels(odd)),
                 "router": router.make_task("router.front", {}, p.settings.model_copy(update={"router_infra": "aws"}),
                                            labels=p.labels("router.front")),
                 "service": make_service_task("s", dict(attrs, placement="service"), p.settings, 2,
                                              labels=p.labels("fleet.chat"))}
        result = {}
        for kind, task in tasks.items():
            for r in task.resources:
                r.validate()  # SkyPilot's own checks, labels included, for the candidate's cloud
            rules = {str(c): all(c.is_label_valid(k, v)[0] for r in task.resources for k, v in r.labels.items())
                     for c in registry.CLOUD_REGISTRY.values()}
            result[kind] = {"labels": [r.labels for r in task.resources], "every_cloud": all(rules.values())}
    """, lineage=LINEAGE)
    mine = {"infraplan-lineage": LINEAGE}
    assert out["cluster"]["labels"] == [dict(mine, **{"infraplan-address": "fleet-chat-1"})] * 2
    assert out["router"]["labels"] == [dict(mine, **{"infraplan-address": "router-front"})]
    assert out["service"]["labels"] == [dict(mine, **{"infraplan-address": "fleet-chat"})] * 2
    odd = out["odd"]["labels"][0]["infraplan-address"]
    assert odd.startswith("fleet-chat-us-east-1-12-xxx") and len(odd) <= 63 and odd[-1].isalnum()
    assert all(v["every_cloud"] for v in out.values()), out


def test_what_the_in_flight_check_reads_is_skypilots_own_request_api(plugin_session):
    """`SkyClient.in_flight` asks `sky.api_status(cluster_name=...)` and reads `request_id`, `name`,
    `status` and `cluster_name` of its RequestPayloads: check those against the real SDK."""
    got = plugin_session.run("""
        import inspect
        import sky
        from sky.server.requests import payloads, requests
        result = {"params": list(inspect.signature(sky.api_status).parameters),
                  "fields": list(payloads.RequestPayload.model_fields),
                  "status": [s.value for s in requests.RequestStatus]}
    """)
    assert "cluster_name" in got["params"]
    assert {"request_id", "name", "status", "cluster_name"} <= set(got["fields"])
    assert {"PENDING", "RUNNING"} <= set(got["status"])

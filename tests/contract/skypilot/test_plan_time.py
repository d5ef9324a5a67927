"""Plan time with real sky.Task/sky.Resources objects, the real optimizer and the real catalog rows."""

from __future__ import annotations

import pytest

from infraplan.errors import ProviderError
from infraplan.providers.contract import ProviderContext
from infraplan_providers.skypilot.pricing import estimate
from infraplan_providers.skypilot.provider import SkyPilotProvider
from infraplan_providers.skypilot.settings import SkyPilotSettings
from infraplan_providers.skypilot.translate import make_resources, make_task
from infraplan.models.kinds import ResourceKind

from helpers.sky_offline import sky
from helpers.paths import EXAMPLES

S = SkyPilotSettings()
ATTRS = {"fleet": "fleet.chat", "index": 0, "model_source": "hf://meta-llama/Llama-3.1-70B-Instruct",
         "model_revision": "abc1234", "served_name": "llama-70b", "accelerators": "H100:8",
         "args": {"tp_size": 8, "context_length": 8192}, "env": {"LOG_LEVEL": "info"}}


def test_failover_and_spot_fallback_become_an_ordered_resources_list():
    attrs = dict(ATTRS, failover=["aws/us-east-1", "gcp/us-central1"], use_spot=True, spot_fallback=True,
                 disk_size=500)
    res = make_resources(attrs, S)
    assert all(isinstance(r, sky.Resources) for r in res)
    got = [(str(r.cloud), r.region, r.use_spot) for r in res]
    assert got == [("AWS", "us-east-1", True), ("GCP", "us-central1", True),
                   ("AWS", "us-east-1", False), ("GCP", "us-central1", False)]
    assert {r.disk_size for r in res} == {500}
    assert res[0].accelerators == {"H100": 8}
    assert res[0].ports == [str(S.port)]
    task = make_task("c", attrs, S)
    assert isinstance(task.resources, list) and len(task.resources) == 4  # ordered, not any_of


def test_task_runs_sglang_with_mapped_args_and_secrets_only_from_env(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    task = make_task("infraplan-chat-0", dict(ATTRS, cloud="aws"), S, with_secrets=True)
    assert "python -m sglang.launch_server --model-path meta-llama/Llama-3.1-70B-Instruct" in task.run
    assert "--tp-size 8" in task.run and "--context-length 8192" in task.run and "--port 30000" in task.run
    assert f"sglang[all]=={S.sglang_version}" in task.setup
    assert task.envs == {"LOG_LEVEL": "info"}
    assert task.secrets["HF_TOKEN"].get_secret_value() == "hf_secret_value"  # SkyPilot keeps it a SecretStr
    assert "hf_secret_value" not in repr(task.secrets) and "hf_secret_value" not in task.run
    assert not make_task("p", dict(ATTRS, cloud="aws"), S).secrets


@pytest.mark.parametrize("attrs, cloud, instance, hourly, spot", [
    ({"cloud": "aws", "region": "us-east-1", "instance_type": "p5.48xlarge"}, "aws", "p5.48xlarge", 55.04, 14.246),
    ({"cloud": "gcp", "region": "us-central1"}, "gcp", "a3-highgpu-8g", 43.06615, None),
    ({"cloud": "lambda", "region": "us-east-1"}, "lambda", "gpu_8x_h100_sxm5", 23.92, None),
])
def test_catalog_prices(offline_clouds, attrs, cloud, instance, hourly, spot):
    est = estimate(dict(ATTRS, **attrs), S)
    assert (est["cloud"], est["instance_type"]) == (cloud, instance)
    assert est["hourly"] == pytest.approx(hourly)
    assert est["hourly_on_demand"] == pytest.approx(hourly)
    if spot is not None:
        assert est["hourly_spot"] == pytest.approx(spot)
    assert est["gpu_memory_gib"] == pytest.approx(80)


def test_optimizer_picks_the_cheapest_h100x8_across_four_clouds(offline_clouds):
    est = estimate(ATTRS, S)
    assert (est["cloud"], est["instance_type"], est["hourly"]) == ("runpod", "8x_H100_SECURE", pytest.approx(19.12))


def test_spot_first_with_on_demand_fallback_is_priced_in_order(offline_clouds):
    attrs = dict(ATTRS, failover=["aws/us-east-1", "gcp/us-central1"], use_spot=True, spot_fallback=True)
    est = estimate(attrs, S)
    assert (est["cloud"], est["region"], est["use_spot"]) == ("aws", "us-east-1", True)
    assert est["hourly"] == pytest.approx(14.246) and est["hourly_on_demand"] == pytest.approx(55.04)
    fo = est["failover"]
    assert [(f["cloud"], f["use_spot"]) for f in fo] == [("aws", True), ("gcp", True), ("aws", False), ("gcp", False)]
    assert fo[2]["hourly"] == pytest.approx(55.04) and fo[3]["hourly"] == pytest.approx(43.06615)


def test_no_offering_is_a_provider_error(offline_clouds):
    with pytest.raises(ProviderError, match="eu-west-1"):
        estimate(dict(ATTRS, cloud="aws", region="eu-west-1"), S)
    with pytest.raises(ProviderError, match="invalid SkyPilot resources"):
        make_resources(dict(ATTRS, cloud="nosuchcloud"), S)
    with pytest.raises(ProviderError, match="no offering"):  # a CPU instance has no H100s
        estimate(dict(ATTRS, instance_type="m6i.xlarge", cloud="aws"), S)


def test_provider_estimate_is_cached(tmp_path, offline_clouds, monkeypatch):
    p = SkyPilotProvider(ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path))
    calls = []
    import infraplan_providers.skypilot.pricing as pricing

    real = pricing.estimate
    monkeypatch.setattr(pricing, "estimate", lambda a, s: calls.append(1) or real(a, s))
    a = p.estimate(ResourceKind.REPLICA, dict(ATTRS, cloud="aws", region="us-east-1"))
    b = p.estimate(ResourceKind.REPLICA, dict(ATTRS, cloud="aws", region="us-east-1", index=7))
    assert a == b and len(calls) == 1


def test_a_skyserve_canary_without_a_router_is_a_warning_until_a_version_rolls_out(offline_clouds, tmp_path):
    import shutil

    from click.testing import CliRunner

    from infraplan.cli.main import cli

    example = EXAMPLES / "multicloud"
    cfg = tmp_path / "cfg"
    shutil.copytree(example, cfg)
    main = cfg / "main.yaml"
    main.write_text(main.read_text().replace("    placement: service\n",
                                             "    placement: service\n    rollout: {strategy: canary}\n"))
    r = CliRunner().invoke(cli, ["plan", str(cfg), "--refresh=false", "--state", str(tmp_path / "s.db")])
    assert r.exit_code == 0, r.output
    assert "no router fronts fleet.chat" in r.output and "Traceback" not in r.output
    main.write_text(main.read_text().replace("rollout: {strategy: canary}", "rollout: {strategy: recreate}"))
    r = CliRunner().invoke(cli, ["plan", str(cfg), "--refresh=false", "--state", str(tmp_path / "s.db")])
    assert r.exit_code == 1 and "recreate is not available with placement: service" in r.output

"""Plan-time prices through the plugin worker: SkyPilot's real optimizer over the real catalog
rows (/work/shared/catalogs), one worker for the module."""

from __future__ import annotations

import pytest

from infraplan.errors import ProviderError
from infraplan.providers.contract import ResourceKind

from helpers.skypilot_plugin import NEEDS_PLUGIN, faked_worker

pytestmark = NEEDS_PLUGIN

ATTRS = {"fleet": "fleet.chat", "index": 0, "model_source": "hf://meta-llama/Llama-3.1-70B-Instruct",
         "model_revision": "abc1234", "served_name": "llama-70b", "accelerators": "H100:8",
         "args": {"tp_size": 8, "context_length": 8192}}


@pytest.fixture(scope="module")
def sky(module_dir, sky_module_env):
    with faked_worker(module_dir, sky_module_env) as (provider, _fake):  # no SDK request is made: pricing only
        yield provider


def estimate(sky, **attrs):
    return sky.estimate(ResourceKind.REPLICA, dict(ATTRS, **attrs))


@pytest.mark.parametrize("attrs, cloud, instance, hourly, spot", [
    ({"cloud": "aws", "region": "us-east-1", "instance_type": "p5.48xlarge"}, "aws", "p5.48xlarge", 55.04, 14.246),
    ({"cloud": "gcp", "region": "us-central1"}, "gcp", "a3-highgpu-8g", 43.06615, None),
    ({"cloud": "lambda", "region": "us-east-1"}, "lambda", "gpu_8x_h100_sxm5", 23.92, None),
])
def test_catalog_prices(sky, attrs, cloud, instance, hourly, spot):
    est = estimate(sky, **attrs)
    assert (est["cloud"], est["instance_type"]) == (cloud, instance)
    assert est["hourly"] == pytest.approx(hourly)
    assert est["hourly_on_demand"] == pytest.approx(hourly)
    if spot is not None:
        assert est["hourly_spot"] == pytest.approx(spot)
    assert est["gpu_memory_gib"] == pytest.approx(80)


def test_optimizer_picks_the_cheapest_h100x8_across_four_clouds(sky):
    est = estimate(sky)
    assert (est["cloud"], est["instance_type"], est["hourly"]) == ("runpod", "8x_H100_SECURE", pytest.approx(19.12))


def test_spot_first_with_on_demand_fallback_is_priced_in_order_for_clusters(sky):
    est = estimate(sky, failover=["aws/us-east-1", "gcp/us-central1"], use_spot=True, spot_fallback=True)
    assert (est["cloud"], est["region"], est["use_spot"]) == ("aws", "us-east-1", True)
    assert est["hourly"] == pytest.approx(14.246) and est["hourly_on_demand"] == pytest.approx(55.04)
    fo = est["failover"]
    assert [(f["cloud"], f["use_spot"]) for f in fo] == [("aws", True), ("gcp", True), ("aws", False), ("gcp", False)]
    assert fo[2]["hourly"] == pytest.approx(55.04) and fo[3]["hourly"] == pytest.approx(43.06615)


def test_no_offering_is_a_provider_error(sky):
    with pytest.raises(ProviderError, match="eu-west-1"):
        estimate(sky, cloud="aws", region="eu-west-1")
    with pytest.raises(ProviderError, match="invalid SkyPilot resources"):
        estimate(sky, cloud="nosuchcloud")
    with pytest.raises(ProviderError, match="no offering"):  # a CPU instance has no H100s
        estimate(sky, instance_type="m6i.xlarge", cloud="aws")

"""Fleet cost arithmetic, the plan summary, the provider hook and --max-hourly-cost."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from infraplan.providers import registry as provider_mod
from infraplan.cli.main import cli
from infraplan.cost import fleet_cost, free_estimate, over_budget, summarise
from infraplan.errors import PlanError
from infraplan.providers.contract import Provider


def test_fleet_cost_multiplies_and_prices_tokens():
    unit = {"hourly": 55.04, "hourly_on_demand": 55.04, "hourly_spot": 14.246}
    c = fleet_cost(unit, 3, throughput_tokens_per_s=2500)
    assert c["hourly"] == pytest.approx(165.12)
    assert c["hourly_spot"] == pytest.approx(3 * 14.246)
    # $55.04/h over 2500 tok/s * 3600 s = 9e6 tokens/h -> $6.1156 per 1M tokens
    assert c["usd_per_million_output_tokens"] == pytest.approx(55.04 / 9.0, rel=1e-6)
    assert fleet_cost(None, 3) is None


def test_summary_and_budget():
    s = summarise({"fleet.a": 10.0, "fleet.gone": 5.0}, {"fleet.a": 20.0, "fleet.new": 1.5})
    assert (s["before_hourly"], s["after_hourly"], s["delta_hourly"]) == (15.0, 21.5, 6.5)
    over_budget(s, 21.5)
    with pytest.raises(PlanError, match=r"\$21.50/h"):
        over_budget(s, 21.0)
    with pytest.raises(PlanError, match="no price for fleet.x"):
        over_budget(summarise({}, {"fleet.x": None}), 100)
    assert free_estimate("local")["hourly"] == 0.0
    assert free_estimate("someprovider") is None


class PricedProvider(Provider):
    """A provider whose replicas cost $2.50/h each; counts estimate calls."""

    name = "priced"
    calls = 0

    def estimate(self, kind, attributes):
        type(self).calls += 1
        return {"cloud": "test", "region": "r1", "instance_type": "big", "hourly": 2.5,
                "hourly_on_demand": 2.5, "hourly_spot": 1.0, "accelerators": attributes.get("accelerators")}


CONFIG = """
model:
  m: {source: hf://org/m}
fleet:
  chat:
    provider: priced
    model: model.m
    replicas: %d
    throughput_tokens_per_s: 1000
"""


def test_plan_prices_each_fleet_once_and_enforces_budget(tmp_path, monkeypatch):
    real = provider_mod.load_provider_class
    monkeypatch.setattr(provider_mod, "load_provider_class",
                        lambda name: PricedProvider if name == "priced" else real(name))
    (tmp_path / "main.yaml").write_text(CONFIG % 40)
    PricedProvider.calls = 0
    r = CliRunner().invoke(cli, ["plan", str(tmp_path), "--refresh=false", "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    assert PricedProvider.calls == 1  # one estimate for 40 replicas
    fleet = next(c for c in plan["changes"] if c["address"] == "fleet.chat")
    assert fleet["cost"]["hourly"] == pytest.approx(100.0)
    assert fleet["cost"]["usd_per_million_output_tokens"] == pytest.approx(2.5 / 3.6)
    assert plan["cost"]["delta_hourly"] == pytest.approx(100.0)

    text = CliRunner().invoke(cli, ["plan", str(tmp_path), "--refresh=false"])
    assert "fleet.chat: $100.00/h = 40 x $2.50/h, test/r1 (big)" in text.output
    assert "Total: $100.00/h (was $0.00/h, +$100.00/h)" in text.output

    r = CliRunner().invoke(cli, ["plan", str(tmp_path), "--refresh=false", "--max-hourly-cost", "99",
                                 "--out", str(tmp_path / "p.plan")])
    assert r.exit_code == 1
    assert "over --max-hourly-cost $99.00/h" in r.output
    assert not (tmp_path / "p.plan").exists()


def test_a_blue_green_rollback_window_shows_the_old_set_cost(tmp_path, monkeypatch):
    from infraplan.state import StateStore

    real = provider_mod.load_provider_class
    monkeypatch.setattr(provider_mod, "load_provider_class",
                        lambda name: PricedProvider if name == "priced" else real(name))
    cfg = CONFIG % 2 + "    rollout: {strategy: blue_green, rollback_window: 30m}\n" + \
        "router:\n  front: {provider: priced, fleets: [fleet.chat]}\n"
    (tmp_path / "main.yaml").write_text(cfg)
    first = json.loads(CliRunner().invoke(cli, ["plan", str(tmp_path), "--refresh=false", "--json"]).output)
    with StateStore(tmp_path / "infraplan.db") as store:  # as if that plan had been applied
        for c in first["changes"]:
            store.put(c["address"], kind=c["kind"], provider=c["provider"], attributes=c["after"])
    (tmp_path / "main.yaml").write_text(cfg.replace("hf://org/m}", "hf://org/m, revision: v2}"))
    r = CliRunner().invoke(cli, ["plan", str(tmp_path), "--refresh=false", "--json"])
    assert r.exit_code == 0, r.output
    fleet = next(c for c in json.loads(r.output)["changes"] if c["address"] == "fleet.chat")
    assert fleet["cost"]["rollback_window"] == {"window": "30m", "seconds": 1800.0, "extra_hourly": 5.0,
                                                "extra_total": 2.5}
    text = CliRunner().invoke(cli, ["plan", str(tmp_path), "--refresh=false"]).output
    assert "blue-green rollback window 30m keeps the old set: +$5.00/h while kept (about $2.50)" in text


def test_a_shared_controller_is_counted_once_per_side():
    ctl = {"cloud": "aws", "region": "us-east-1", "instance_type": "m6i.xlarge", "hourly": 0.192}
    s = summarise({"fleet.a": 10.0}, {"fleet.a": 10.0, "fleet.b": 4.0},
                  {"sky: skyserve-controller": ctl}, {"sky: skyserve-controller": ctl})
    assert s["before_hourly"] == pytest.approx(10.192) and s["after_hourly"] == pytest.approx(14.192)
    assert s["delta_hourly"] == pytest.approx(4.0)
    gone = summarise({"fleet.a": 10.0}, {}, {"sky: skyserve-controller": ctl}, {})
    assert gone["delta_hourly"] == pytest.approx(-10.192)
    assert gone["shared"][0]["before"] and not gone["shared"][0]["after"]

"""The Terraform-shaped plan view (`infraplan show --json --format terraform PLANFILE`).

Every plan here is made by the real engine from a real config and state (the `null` provider:
resources that live only in state), applied through the Workspace between steps. Each view is
checked against the structure of Terraform's plan JSON as hashicorp/terraform-json reads it
(`TfPlan` below, no unknown keys but the `infraplan` extension), then for what it says.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from infraplan.cost import HOURS_PER_MONTH
from infraplan.plan.planfile import ApplyOptions, load_plan, save_plan
from infraplan.plan.planner import PlanOptions
from infraplan.plan.terraform_json import terraform_plan
from infraplan.providers import registry
from infraplan.providers.contract import ReadResult
from infraplan.state import StateStore
from infraplan.util.redact import REDACTED
from infraplan.workspace import Workspace
from infraplan_providers.null.provider import NullProvider

SECRET = "sk-live-7Qz9TopSecret"


# -- Terraform's plan JSON, as terraform-json (the Go library Terraform's tools use) reads it ---------
TfAction = Literal["no-op", "create", "read", "update", "delete"]
TERRAFORM_ACTIONS = [["no-op"], ["create"], ["read"], ["update"], ["delete"], ["delete", "create"],
                     ["create", "delete"]]
TfReason = Literal[
    "replace_because_tainted", "replace_because_cannot_update", "replace_by_request", "replace_by_triggers",
    "delete_because_no_resource_config", "delete_because_wrong_repetition", "delete_because_count_index",
    "delete_because_each_key", "delete_because_no_module", "delete_because_no_move_target",
    "read_because_config_unknown", "read_because_dependency_pending", "read_because_check_nested"]
Marks = dict[str, Any] | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TfChange(_Strict):
    actions: list[TfAction]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    after_unknown: Marks
    before_sensitive: Marks
    after_sensitive: Marks
    replace_paths: list[list[str | int]] | None = None


class TfResourceChange(_Strict):
    address: str
    mode: Literal["managed", "data"]
    type: str
    name: str
    index: int | str | list[int | str] | None = None
    provider_name: str
    deposed: str | None = None
    change: TfChange
    action_reason: TfReason | None = None
    infraplan: dict[str, Any] | None = None  # infraplan's extension: tools ignore unknown keys


class TfOutputChange(_Strict):
    actions: list[TfAction]
    before: Any
    after: Any
    after_unknown: bool
    before_sensitive: bool
    after_sensitive: bool


class TfStateResource(_Strict):
    address: str
    mode: Literal["managed", "data"]
    type: str
    name: str
    index: int | str | list[int | str] | None = None
    provider_name: str
    schema_version: int
    values: dict[str, Any]
    sensitive_values: dict[str, Any]


class TfModule(_Strict):
    resources: list[TfStateResource]


class TfPlannedValues(_Strict):
    outputs: dict[str, dict[str, Any]]
    root_module: TfModule


class TfStateValues(_Strict):
    root_module: TfModule


class TfPriorState(_Strict):
    format_version: str
    values: TfStateValues


class TfVariable(_Strict):
    value: Any


class TfPlan(_Strict):
    format_version: Literal["1.2"]
    variables: dict[str, TfVariable]
    planned_values: TfPlannedValues
    resource_drift: list[TfResourceChange] | None = None
    resource_changes: list[TfResourceChange]
    output_changes: dict[str, TfOutputChange]
    prior_state: TfPriorState
    configuration: dict[str, Any]
    timestamp: str
    errored: bool
    infraplan: dict[str, Any]


def _leaves(value: Any, path: tuple = ()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, path + (i,))
    else:
        yield path, value


def _at(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


def check_shape(doc: dict) -> dict:
    """`doc` parses as Terraform's plan JSON and keeps its rules; returns {address: resource change}."""
    TfPlan.model_validate(doc)
    for rc in [*doc["resource_changes"], *doc.get("resource_drift", [])]:
        ch = rc["change"]
        assert ch["actions"] in TERRAFORM_ACTIONS, rc["address"]
        keys = rc["index"] if isinstance(rc.get("index"), list) else ([rc["index"]] if "index" in rc else [])
        assert rc["address"] == f"{rc['type']}.{rc['name']}" + "".join(f"[{json.dumps(k)}]" for k in keys)
        if ch["actions"] == ["create"]:
            assert ch["before"] is None and ch["before_sensitive"] is False
        if ch["actions"] == ["delete"]:
            assert ch["after"] is None and ch["after_sensitive"] is False and ch["after_unknown"] == {}
        if ch["actions"] == ["no-op"]:
            assert ch["before"] == ch["after"]
        for side in ("before", "after"):  # a sensitive mark exactly where a value is redacted
            marked = {p for p, v in _leaves(ch[f"{side}_sensitive"]) if v is True}
            redacted = {p for p, v in _leaves(ch[side]) if v == REDACTED}
            assert marked == redacted, (rc["address"], side)
        for path, v in _leaves(ch["after_unknown"]):  # unknown values are not in `after`
            if v is True:
                assert path[0] not in (ch["after"] or {}), (rc["address"], path)
    return {(rc["address"] + (f"#{rc['deposed']}" if rc.get("deposed") else "")): rc
            for rc in doc["resource_changes"]}


# -- real plans ----------------------------------------------------------------------------------
class PricedNull(NullProvider):
    """The null provider, with replicas priced at $1.25/h."""

    name = "pricednull"

    def estimate(self, kind, attributes):
        return {"cloud": "test", "region": "r1", "hourly": 1.25, "hourly_on_demand": 1.25, "hourly_spot": None}


class DriftingNull(NullProvider):
    """The null provider, whose refresh finds what the test says: servers gone, endpoints moved."""

    name = "driftnull"
    gone: set[str] = set()
    moved: dict[str, str] = {}

    def read(self, kind, address, attributes):
        if address in self.gone:
            return ReadResult(exists=False, detail="no such server")
        seen = dict(attributes)
        if address in self.moved:
            seen["endpoint"] = self.moved[address]
        return ReadResult(exists=True, attributes=seen, healthy=True)


@pytest.fixture(autouse=True)
def test_providers(monkeypatch):
    real = registry.load_provider_class
    extra = {"pricednull": PricedNull, "driftnull": DriftingNull}
    monkeypatch.setattr(registry, "load_provider_class", lambda name: extra.get(name) or real(name))
    DriftingNull.gone, DriftingNull.moved = set(), {}


CONFIG = """\
variable:
  rev: {type: string, default: "a1"}
  team: {type: string, default: ml}
  n: {type: number, default: 3}
  key: {type: string, sensitive: true}
provider:
  box: {type: "null"}
model:
  m: {source: hf://org/m, revision: "${var.rev}"}
fleet:
  web:
    provider: box
    model: model.m
    replicas: ${var.n}
    labels: {team: "${var.team}"}
    engine:
      env: {UPSTREAM_AUTHORIZATION: "Bearer ${var.key}"}
  batch:
    provider: box
    model: model.m
    replicas: 1
    lifecycle: {create_before_destroy: false}
output:
  endpoint:
    value: ${fleet.web.endpoint}
  auth:
    value: "Bearer ${var.key}"
    sensitive: true
"""


class Project:
    """A config folder and its state, planned and applied through the Workspace."""

    def __init__(self, root: Path, config: str, **defaults: Any):
        self.root = root
        (root / "main.yaml").write_text(textwrap.dedent(config))
        self.state = root / "infraplan.db"
        self.defaults = defaults  # --var values given to every plan

    def ws(self, **vars: Any) -> Workspace:
        return Workspace(self.root, state_path=self.state, env={},
                         var_args=[f"{k}={v}" for k, v in {**self.defaults, **vars}.items()])

    def plan(self, options: PlanOptions | None = None, **vars: Any):
        return self.ws(**vars).plan(options or PlanOptions())

    def apply(self, **vars: Any) -> None:
        ws = self.ws(**vars)
        assert ws.apply(ws.plan()).ok

    def view(self, options: PlanOptions | None = None, **vars: Any) -> tuple[dict, dict]:
        doc = terraform_plan(self.plan(options, **vars))
        return doc, check_shape(doc)


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path, CONFIG, key=SECRET)


def actions(by: dict) -> dict[str, list[str]]:
    return {a: rc["change"]["actions"] for a, rc in by.items()}


# -- the tests -------------------------------------------------------------------------------------
def test_create_from_empty_state(project):
    doc, by = project.view()
    assert actions(by) == {a: ["create"] for a in (
        "fleet.batch", "fleet.batch[0]", "fleet.web", "fleet.web[0]", "fleet.web[1]", "fleet.web[2]", "model.m")}
    rep = by["fleet.web[1]"]
    assert (rep["type"], rep["name"], rep["index"], rep["mode"]) == ("fleet", "web", 1, "managed")
    assert rep["provider_name"] == "infraplan/null" and by["model.m"]["provider_name"] == "infraplan/builtin"
    assert rep["infraplan"]["kind"] == "replica" and by["fleet.web"]["infraplan"]["kind"] == "fleet"
    # what the provider computes, and the port it allocates, are known only after apply
    unknown = {k for k, v in rep["change"]["after_unknown"].items() if v is True}
    assert unknown == set(NullProvider.computed) | {"port"}
    assert rep["change"]["after"]["model_revision"] == "a1" and "endpoint" not in rep["change"]["after"]
    assert by["fleet.web"]["change"]["after_unknown"]["endpoints"] is True
    assert "action_reason" not in rep
    assert doc["prior_state"]["values"]["root_module"]["resources"] == []
    assert {r["address"] for r in doc["planned_values"]["root_module"]["resources"]} == set(by)
    assert doc["output_changes"]["endpoint"]["actions"] == ["create"]
    assert doc["output_changes"]["endpoint"]["after_unknown"] is True
    config = doc["configuration"]
    assert [r["address"] for r in config["root_module"]["resources"]] == ["fleet.batch", "fleet.web", "model.m"]
    assert config["provider_config"]["box"] == {"name": "null", "full_name": "infraplan/null", "alias": "box"}
    assert doc["errored"] is False and doc["timestamp"].endswith("Z") and "resource_drift" not in doc


def test_update_in_place_and_no_op(project):
    project.apply()
    doc, by = project.view(team="research")
    assert actions(by)["fleet.web[0]"] == ["update"]
    rep = by["fleet.web[0]"]["change"]
    assert (rep["before"]["labels"], rep["after"]["labels"]) == ({"team": "ml"}, {"team": "research"})
    assert rep["after"]["id"] == rep["before"]["id"]  # an update keeps what the provider computed
    assert actions(by)["model.m"] == ["no-op"] and actions(by)["fleet.batch[0]"] == ["no-op"]
    assert by["model.m"]["change"]["before"] == by["model.m"]["change"]["after"]
    assert not any("action_reason" in rc for rc in by.values())
    assert len(doc["prior_state"]["values"]["root_module"]["resources"]) == len(by)

    _, same = project.view()  # nothing changed: every change is a no-op, and so are the outputs
    assert set(map(tuple, actions(same).values())) == {("no-op",)}


def test_replacements_in_both_orders(project):
    project.apply()
    doc, by = project.view(rev="b2")
    # fleet.web keeps the default create-before-destroy; fleet.batch sets create_before_destroy: false
    assert actions(by)["fleet.web[0]"] == ["create", "delete"]
    assert actions(by)["fleet.batch[0]"] == ["delete", "create"]
    for addr in ("fleet.web[0]", "fleet.batch[0]"):
        assert by[addr]["action_reason"] == "replace_because_cannot_update"
        assert by[addr]["change"]["replace_paths"] == [["model_revision"]]
        assert by[addr]["change"]["before"]["model_revision"] == "a1"
        assert by[addr]["change"]["after"]["model_revision"] == "b2"
        assert by[addr]["change"]["after_unknown"]["id"] is True  # a new object gets a new id
    assert actions(by)["model.m"] == ["update"]
    assert doc["output_changes"]["endpoint"]["actions"] == ["update"]


def test_replacement_reasons_tainted_and_requested(project):
    project.apply()
    with StateStore(project.state) as store:
        store.taint("fleet.web[1]")
    _, by = project.view(PlanOptions(replace=("fleet.web[2]",)))
    assert by["fleet.web[1]"]["action_reason"] == "replace_because_tainted"
    assert by["fleet.web[2]"]["action_reason"] == "replace_by_request"
    assert actions(by)["fleet.web[1]"] == actions(by)["fleet.web[2]"] == ["create", "delete"]
    assert "replace_paths" not in by["fleet.web[1]"]["change"]  # no attribute forces it


def test_delete_reasons(project):
    project.apply()
    _, by = project.view(n=1)  # a replica past `replicas`
    assert actions(by)["fleet.web[2]"] == ["delete"]
    assert by["fleet.web[2]"]["action_reason"] == by["fleet.web[1]"]["action_reason"] == "delete_because_count_index"
    assert by["fleet.web[2]"]["change"]["before"]["index"] == 2

    (project.root / "main.yaml").write_text(CONFIG.split("  batch:")[0] + "output:" + CONFIG.split("output:")[1])
    _, by = project.view()  # the whole block gone
    assert {a: rc.get("action_reason") for a, rc in by.items() if "batch" in a} == {
        "fleet.batch": "delete_because_no_resource_config", "fleet.batch[0]": "delete_because_no_resource_config"}

    doc, by = project.view(PlanOptions(destroy=True))
    assert set(map(tuple, actions(by).values())) == {("delete",)}
    assert not any("action_reason" in rc for rc in by.values())  # Terraform gives none in a destroy plan
    assert doc["planned_values"]["root_module"]["resources"] == [] and doc["output_changes"] == {}


def test_for_each_keys(tmp_path):
    config = """\
    model:
      m: {source: hf://org/m}
    fleet:
      r:
        provider: x
        for_each: {us: 2, eu: 1}
        model: model.m
        replicas: ${each.value}
    provider:
      x: {type: "null"}
    """
    p = Project(tmp_path, config)
    p.apply()
    (tmp_path / "main.yaml").write_text(textwrap.dedent(config).replace(", eu: 1", ""))
    _, by = p.view()
    assert by['fleet.r["eu"][0]']["index"] == ["eu", 0] and by['fleet.r["us"]']["index"] == "us"
    assert by['fleet.r["eu"]']["action_reason"] == by['fleet.r["eu"][0]']["action_reason"] == "delete_because_each_key"
    assert actions(by)['fleet.r["us"][1]'] == ["no-op"]


def test_sensitive_values_never_in_clear(project):
    plan = project.plan()
    assert plan.secrets  # the in-memory plan knows the secret: the view must redact it itself
    doc = terraform_plan(plan)
    by = check_shape(doc)
    assert SECRET not in json.dumps(doc)
    rep = by["fleet.web[0]"]["change"]
    assert rep["after"]["env"]["UPSTREAM_AUTHORIZATION"] == REDACTED
    assert rep["after_sensitive"]["env"] == {"UPSTREAM_AUTHORIZATION": True}
    assert doc["variables"]["key"] == {"value": REDACTED} and doc["variables"]["team"] == {"value": "ml"}
    auth = doc["output_changes"]["auth"]
    assert auth["after"] == REDACTED and auth["after_sensitive"] is True
    assert doc["planned_values"]["outputs"]["auth"] == {"sensitive": True, "value": REDACTED}

    project.apply()
    doc, by = project.view(rev="b2")  # before, too
    assert SECRET not in json.dumps(doc)
    assert by["fleet.web[0]"]["change"]["before_sensitive"]["env"] == {"UPSTREAM_AUTHORIZATION": True}


def test_the_view_of_a_saved_plan_is_the_view_of_the_plan(project, tmp_path):
    project.apply()
    plan = project.plan(rev="b2", n=2)
    save_plan(plan, tmp_path / "p.plan", ApplyOptions())
    saved, _ = load_plan(tmp_path / "p.plan")
    assert terraform_plan(saved) == terraform_plan(plan)


def test_cost_extension(tmp_path):
    config = """\
    model:
      m: {source: hf://org/m}
    fleet:
      chat: {provider: pricednull, model: model.m, replicas: "${var.n}"}
    variable:
      n: {type: number, default: 2}
    """
    p = Project(tmp_path, config)
    doc, by = p.view()
    cost = by["fleet.chat"]["infraplan"]["cost"]
    assert (cost["before_hourly"], cost["after_hourly"], cost["delta_hourly"]) == (0.0, 2.5, 2.5)
    assert cost["after_monthly"] == pytest.approx(2.5 * HOURS_PER_MONTH) and cost["replicas"] == 2
    assert "cost" not in by["fleet.chat[0]"]["infraplan"]  # fleets are priced, not each replica

    p.apply()
    doc, by = p.view(n=3)
    cost = by["fleet.chat"]["infraplan"]["cost"]
    assert (cost["before_hourly"], cost["after_hourly"]) == (2.5, 3.75)
    assert cost["delta_monthly"] == pytest.approx(1.25 * HOURS_PER_MONTH)
    total = doc["infraplan"]["cost"]
    assert (total["before_hourly"], total["after_hourly"], total["delta_hourly"]) == (2.5, 3.75, 1.25)
    assert total["delta_monthly"] == pytest.approx(1.25 * 730) and total["hours_per_month"] == 730
    assert doc["infraplan"]["summary"]["add"] == 1


def test_drift_from_refresh(tmp_path):
    p = Project(tmp_path, """\
    model:
      m: {source: hf://org/m}
    fleet:
      f: {provider: driftnull, model: model.m, replicas: 2}
    """)
    p.apply()
    DriftingNull.moved = {"fleet.f[0]": "null://moved"}
    DriftingNull.gone = {"fleet.f[1]"}
    doc, by = p.view()
    drift = {rc["address"]: rc["change"] for rc in doc["resource_drift"]}
    assert drift["fleet.f[0]"]["actions"] == ["update"]
    assert drift["fleet.f[0]"]["before"]["endpoint"] == "null://fleet.f[0]"
    assert drift["fleet.f[0]"]["after"]["endpoint"] == "null://moved"
    assert drift["fleet.f[1]"]["actions"] == ["delete"] and drift["fleet.f[1]"]["after"] is None
    # the state catches up with what refresh found (no-op); the gone server is created again
    assert actions(by)["fleet.f[0]"] == ["no-op"]
    assert by["fleet.f[0]"]["change"]["after"]["endpoint"] == "null://moved"
    assert by["fleet.f[0]"]["infraplan"]["action"] == "refresh"
    assert actions(by)["fleet.f[1]"] == ["create"] and by["fleet.f[1]"]["change"]["before"] is None

    doc, _ = p.view(PlanOptions(refresh=False))  # no refresh, no drift
    assert "resource_drift" not in doc

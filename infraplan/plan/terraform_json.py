"""A Terraform-shaped view of a Plan: the JSON `terraform show -json PLANFILE` prints (format 1.2),
so tools written for Terraform plans (conftest/OPA policies, plan summarisers) read infraplan's.

The native plan JSON (`Plan.to_json`) stays the saved-plan format; this is a view of it, a
pure function of the Plan, made from the same redacted data, so a sensitive value is never
in it in clear: it reads ``(sensitive value)`` as in the native view, and ``before_sensitive``
/ ``after_sensitive`` mark it ``true``.

How infraplan's plan maps onto Terraform's:

* Addresses keep their form: ``fleet.chat[0]`` is type ``fleet``, name ``chat``, index ``0``;
  a for_each fleet's replica ``fleet.chat["us"][0]`` has the index ``["us", 0]`` (Terraform
  addresses have one key). The infraplan kind (``replica``, ``fleet``, ``model``,
  ``router``) is in the change's ``infraplan`` object.
* Actions: create ``["create"]``, update ``["update"]``, delete ``["delete"]``, noop
  ``["no-op"]``; replace ``["create", "delete"]`` when create-before-destroy, else
  ``["delete", "create"]``. ``refresh`` (state brought in line with what refresh found) is
  ``["no-op"]`` here with an ``["update"]`` entry in ``resource_drift``, and a server refresh
  found gone is a ``["delete"]`` drift before its ``["create"]``, as Terraform shows them.
* ``action_reason``: ``replace_because_tainted`` (tainted, or a failed or interrupted apply),
  ``replace_by_request`` (``--replace``), ``replace_because_cannot_update`` (an attribute
  forces it; ``replace_paths`` names them), and for deletes of what config no longer has
  ``delete_because_count_index`` (a replica past ``replicas``), ``delete_because_each_key``
  (a for_each key gone) or ``delete_because_no_resource_config``; none in a destroy plan.
* Computed attributes (the provider's ``computed`` set, ports, fleet endpoints: what the plan
  marks unknown) are left out of ``after`` and ``true`` in ``after_unknown``.
* ``output_changes``: infraplan plans record each output's planned value, not its value
  before the plan, so ``before`` is null unless nothing changes: ``["create"]`` against an
  empty state, ``["no-op"]`` in a plan without changes, ``["update"]`` otherwise.
* Cost: the top-level ``infraplan`` object holds the plan's $/hour and $/month (before,
  after, delta; `infraplan.cost.HOURS_PER_MONTH`) and each fleet change's ``infraplan``
  object its own; Terraform tools ignore keys they do not know.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any, Callable

from infraplan.cost import HOURS_PER_MONTH, monthly
from infraplan.models.actions import Action
from infraplan.plan.model import FORMAT_VERSION, REASON_REPLACE_FORCED, REASON_REPLACE_REQUESTED, Change, Plan
from infraplan.util.redact import REDACTED

TERRAFORM_FORMAT_VERSION = "1.2"
STATE_FORMAT_VERSION = "1.0"  # of prior_state, as Terraform writes it
PROVIDER_NAMESPACE = "infraplan"  # provider_name is "infraplan/TYPE"
BUILTIN_PROVIDER = "builtin"  # models live only in state, like Terraform's terraform_data


class TfAction(StrEnum):
    """One of Terraform's change actions (a change has one, or two for a replacement)."""

    NOOP = "no-op"
    CREATE = "create"
    READ = "read"  # data sources: infraplan has none
    UPDATE = "update"
    DELETE = "delete"


class ActionReason(StrEnum):
    """Terraform's `action_reason` values that infraplan's plans give."""

    REPLACE_BECAUSE_TAINTED = "replace_because_tainted"
    REPLACE_BY_REQUEST = "replace_by_request"
    REPLACE_BECAUSE_CANNOT_UPDATE = "replace_because_cannot_update"
    DELETE_BECAUSE_NO_RESOURCE_CONFIG = "delete_because_no_resource_config"
    DELETE_BECAUSE_COUNT_INDEX = "delete_because_count_index"
    DELETE_BECAUSE_EACH_KEY = "delete_because_each_key"


_ADDRESS = re.compile(r"^(?P<type>[^.\[]+)\.(?P<name>[^.\[]+)(?P<keys>(?:\[[^\]]*\])*)$")
_KEY = re.compile(r"\[([^\]]*)\]")


class _Address:
    """An address split as Terraform does: type, name and instance keys."""

    __slots__ = ("type", "name", "keys")

    def __init__(self, address: str, kind: str):
        m = _ADDRESS.match(address)
        if m is None:  # not an infraplan address: keep it whole
            self.type, self.name, self.keys = kind, address, []
            return
        self.type, self.name = m["type"], m["name"]
        self.keys = [_key(k) for k in _KEY.findall(m["keys"])]

    @property
    def block(self) -> str:
        return f"{self.type}.{self.name}"

    @property
    def index(self) -> int | str | list | None:
        if not self.keys:
            return None
        return self.keys[0] if len(self.keys) == 1 else list(self.keys)

    def sort_key(self) -> tuple:
        return (self.type, self.name, [(isinstance(k, str), k) for k in self.keys])


def _key(text: str) -> int | str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, str)) else text


def terraform_plan(plan: Plan) -> dict[str, Any]:
    """`plan` as the JSON `terraform show -json` prints for a saved plan (format_version 1.2)."""
    plan = Plan.from_json(plan.to_json())  # the native JSON's redaction: one place decides what is secret
    addrs = {c.key: _Address(c.address, c.kind) for c in plan.changes}
    changes = sorted(plan.changes, key=lambda c: (addrs[c.key].sort_key(), c.deposed))
    live = [addrs[c.key] for c in changes if c.action != Action.DELETE and not c.deposed]

    resource_changes, drift, planned, prior = [], [], [], []
    for c in changes:
        a = addrs[c.key]
        before, after = _before(c), _after(c)
        rc = _resource(c, a) | {"change": _change(_actions(c), before, after, c.after_unknown)}
        reason = _action_reason(c, a, live, plan.destroy)
        if reason is not None:
            rc["action_reason"] = reason
        forces = [k for k in c.requires_replace if k in (c.before or {}) or k in (c.after or {})]
        if c.action == Action.REPLACE and forces:
            rc["change"]["replace_paths"] = [[k] for k in forces]
        rc["infraplan"] = _extension(c)
        resource_changes.append(rc)
        if c.action == Action.REFRESH:
            gone = c.after is None  # refresh-only: the real thing is gone, its record goes
            drift.append(_resource(c, a) | {"change": _change([TfAction.DELETE if gone else TfAction.UPDATE],
                                                              c.before, c.after, [])})
        elif c.action == Action.CREATE and c.before is not None:  # refresh found the real thing gone
            drift.append(_resource(c, a) | {"change": _change([TfAction.DELETE], c.before, None, [])})
        if after is not None and not c.deposed:
            planned.append(_resource(c, a) | {"schema_version": 0, "values": after,
                                              "sensitive_values": _sensitive(after)})
        if before is not None and not c.deposed:
            prior.append(_resource(c, a) | {"schema_version": 0, "values": before,
                                            "sensitive_values": _sensitive(before)})

    out: dict[str, Any] = {
        "format_version": TERRAFORM_FORMAT_VERSION,
        "variables": {k: {"value": v} for k, v in ((plan.desired_config or {}).get("variables") or {}).items()},
        "planned_values": {"outputs": _planned_outputs(plan), "root_module": {"resources": planned}},
    }
    if drift:
        out["resource_drift"] = drift
    out["resource_changes"] = resource_changes
    out["output_changes"] = _output_changes(plan)
    out["prior_state"] = {"format_version": STATE_FORMAT_VERSION, "values": {"root_module": {"resources": prior}}}
    out["configuration"] = _configuration(plan, addrs, live)
    out["timestamp"] = plan.created_at
    out["errored"] = False
    out["infraplan"] = _plan_extension(plan)
    return out


# -- one resource change ------------------------------------------------------------------
def _resource(c: Change, a: _Address) -> dict[str, Any]:
    rc: dict[str, Any] = {"address": c.address, "mode": "managed", "type": a.type, "name": a.name}
    if a.index is not None:
        rc["index"] = a.index
    rc["provider_name"] = _provider_name(_provider_type(c))
    if c.deposed:
        rc["deposed"] = c.deposed
    return rc


def _provider_type(c: Change) -> str | None:
    return c.provider_type or (c.after or c.before or {}).get("provider_type") or c.provider


def _provider_name(provider_type: str | None) -> str:
    return f"{PROVIDER_NAMESPACE}/{provider_type or BUILTIN_PROVIDER}"


def _actions(c: Change) -> list[TfAction]:
    if c.action == Action.REPLACE:
        both = [TfAction.CREATE, TfAction.DELETE]
        return both if c.create_before_destroy else both[::-1]
    return [{Action.CREATE: TfAction.CREATE, Action.UPDATE: TfAction.UPDATE, Action.DELETE: TfAction.DELETE,
             Action.NOOP: TfAction.NOOP, Action.REFRESH: TfAction.NOOP}[c.action]]


def _before(c: Change) -> dict[str, Any] | None:
    if c.action == Action.CREATE:
        return None  # a server refresh found gone is in resource_drift
    if c.action == Action.REFRESH:
        return c.after  # Terraform's before is the refreshed object; the difference is drift
    return c.before


def _after(c: Change) -> dict[str, Any] | None:
    if c.action == Action.DELETE or c.after is None:
        return None
    unknown = set(c.after_unknown)
    return {k: v for k, v in c.after.items() if k not in unknown}


def _change(actions: list[TfAction], before, after, unknown: list[str]) -> dict[str, Any]:
    if after is None:
        after_unknown: Any = {}
    else:
        after_unknown = _marks(after, _never)
        after_unknown.update({k: True for k in unknown})
    return {"actions": actions, "before": before, "after": after, "after_unknown": after_unknown,
            "before_sensitive": _sensitive(before), "after_sensitive": _sensitive(after)}


def _never(_value: Any) -> bool:
    return False


def _is_redacted(value: Any) -> bool:
    return isinstance(value, str) and value == REDACTED


def _sensitive(value: Any) -> Any:
    return _marks(value, _is_redacted)


def _marks(value: Any, marked: Callable[[Any], bool]) -> Any:
    """Terraform's ``*_sensitive`` / ``after_unknown`` shape: the value's objects and lists with
    ``true`` at marked leaves; unmarked leaves are left out of objects and ``false`` in lists."""
    if marked(value):
        return True
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            m = _marks(v, marked)
            if m is not False:
                out[k] = m
        return out
    if isinstance(value, list):
        return [_marks(v, marked) for v in value]
    return False


def _action_reason(c: Change, a: _Address, live: list[_Address], destroy: bool) -> ActionReason | None:
    if c.action == Action.REPLACE:
        if any(r.startswith(REASON_REPLACE_FORCED) for r in c.reasons):
            return ActionReason.REPLACE_BECAUSE_TAINTED
        if REASON_REPLACE_REQUESTED in c.reasons:
            return ActionReason.REPLACE_BY_REQUEST
        return ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE
    if c.action != Action.DELETE or c.deposed or destroy:
        return None
    siblings = [x.keys for x in live if x.block == a.block]
    if not siblings or not a.keys:
        return ActionReason.DELETE_BECAUSE_NO_RESOURCE_CONFIG
    # the first instance key no instance the config keeps has: a count index or a for_each key
    for depth, key in enumerate(a.keys):
        if not any(s[:depth + 1] == a.keys[:depth + 1] for s in siblings):
            return ActionReason.DELETE_BECAUSE_EACH_KEY if isinstance(key, str) else \
                ActionReason.DELETE_BECAUSE_COUNT_INDEX
    return ActionReason.DELETE_BECAUSE_NO_RESOURCE_CONFIG


def _extension(c: Change) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": c.kind, "action": c.action, "provider": c.provider, "reasons": c.reasons,
                           "risks": c.risks, "warnings": c.warnings}
    if c.cost is not None:
        out["cost"] = _cost(c.cost.get("before_hourly"), c.cost.get("hourly")) | {"replicas": c.cost.get("replicas")}
    return out


def _cost(before: float | None, after: float | None) -> dict[str, Any]:
    delta = None if before is None or after is None else round(after - before, 6)
    return {"currency": "USD", "before_hourly": before, "after_hourly": after, "delta_hourly": delta,
            "before_monthly": monthly(before), "after_monthly": monthly(after), "delta_monthly": monthly(delta)}


# -- outputs, configuration, the plan's extension --------------------------------------------
def _output_value(o: dict[str, Any]) -> Any:
    return REDACTED if o.get("sensitive") and o.get("value") is not None else o.get("value")


def _planned_outputs(plan: Plan) -> dict[str, Any]:
    out = {}
    for name, o in plan.outputs.items():
        entry: dict[str, Any] = {"sensitive": bool(o.get("sensitive"))}
        if not o.get("unknown"):
            entry["value"] = _output_value(o)
        out[name] = entry
    return out


def _output_changes(plan: Plan) -> dict[str, Any]:
    if not any(c.before is not None for c in plan.changes):
        action = TfAction.CREATE
    else:
        action = TfAction.UPDATE if plan.has_changes else TfAction.NOOP
    out = {}
    for name, o in plan.outputs.items():
        unknown, sensitive = bool(o.get("unknown")), bool(o.get("sensitive"))
        after = None if unknown else _output_value(o)
        out[name] = {"actions": [action], "before": after if action == TfAction.NOOP else None, "after": after,
                     "after_unknown": unknown, "before_sensitive": sensitive and action == TfAction.NOOP,
                     "after_sensitive": sensitive}
    return out


def _configuration(plan: Plan, addrs: dict[str, _Address], live: list[_Address]) -> dict[str, Any]:
    providers: dict[str, dict[str, Any]] = {}
    resources: dict[str, dict[str, Any]] = {}
    blocks = {a.block for a in live}
    for c in plan.changes:
        a = addrs[c.key]
        if a.block not in blocks or a.block in resources:
            continue
        key = c.provider or BUILTIN_PROVIDER
        ptype = _provider_type(c) or BUILTIN_PROVIDER
        providers[key] = {"name": ptype, "full_name": _provider_name(ptype)} | ({"alias": key} if key != ptype else {})
        resources[a.block] = {"address": a.block, "mode": "managed", "type": a.type, "name": a.name,
                              "provider_config_key": key, "schema_version": 0}
    return {"provider_config": dict(sorted(providers.items())),
            "root_module": {"resources": [resources[k] for k in sorted(resources)],
                            "outputs": {n: {"sensitive": bool(o.get("sensitive"))} for n, o in plan.outputs.items()}}}


def _plan_extension(plan: Plan) -> dict[str, Any]:
    cost = plan.cost or {}
    total = _cost(cost.get("before_hourly"), cost.get("after_hourly")) if cost else None
    if total is not None:
        total |= {"hours_per_month": HOURS_PER_MONTH, "unpriced": cost.get("unpriced", [])}
    return {"version": plan.infraplan_version, "plan_format_version": FORMAT_VERSION,
            "state": {"lineage": plan.lineage, "serial": plan.serial}, "refreshed": plan.refreshed,
            "destroy": plan.destroy, "summary": plan.summary(), "cost": total, "diagnostics": plan.diagnostics}

"""The Plan: one Change per address, serialisable as the documented plan JSON.

Plan JSON format (``format_version`` "1.0")::

    {
      "format_version": "1.0",
      "infraplan_version": "0.1.0",
      "created_at": "2026-11-23T13:00:00Z",
      "state": {"lineage": "…", "serial": 7},      # the state the plan was made against
      "config": {"path": "…", "digest": "sha256…"},
      "refreshed": true,
      "summary": {"add": 2, "change": 0, "destroy": 1, "replace": 1, "noop": 3},
      "changes": [ {address, kind, provider, action, reasons, before, after,
                    after_unknown, attributes: [{path, before, after, forces_replace}]
                      (changed attributes of updates and replacements; a create has all in `after`),
                    requires_replace, create_before_destroy, dependencies, deposed,
                    risks, warnings} … ],
      "outputs": {"name": {"value": …, "unknown": false, "sensitive": false}},
      "diagnostics": [ … ],
      "cost": {"currency": "USD", "before_hourly", "after_hourly", "delta_hourly", "unpriced": [addr]}
    }

Fleet changes carry ``cost`` ($/hour, placement, fail-over order, GPU fit).

Actions: ``create``, ``update`` (in place), ``replace``, ``delete``, ``noop``,
and ``refresh`` (no real change: state is brought in line with what refresh found).
"""

from __future__ import annotations

from infraplan.util.time import utc_now

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from infraplan.plan.diff import AttributeChange
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind

FORMAT_VERSION = "1.0"
ACTIONS = tuple(Action)  # the plan JSON's action names, in this order

#: the reasons the planner gives a forced replacement (views map them, e.g. to Terraform's action_reason)
REASON_REPLACE_REQUESTED = "replacement requested with --replace"
REASON_REPLACE_FORCED = "replaced because "  # + what forced it: tainted, a failed or interrupted apply


@dataclass
class Change:
    """The planned action for one address (and, for deposed objects, one deposed key)."""

    address: str
    kind: ResourceKind
    action: Action
    provider: str | None = None
    provider_type: str | None = None
    reasons: list[str] = field(default_factory=list)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    after_unknown: list[str] = field(default_factory=list)
    attributes: list[AttributeChange] = field(default_factory=list)
    requires_replace: list[str] = field(default_factory=list)
    create_before_destroy: bool = True
    dependencies: list[str] = field(default_factory=list)
    deposed: str = ""
    risks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fleet: str | None = None
    cost: dict[str, Any] | None = None  # fleets: $/hour and placement (infraplan.cost.fleet_cost)
    rolls_out: bool = False  # an update that redeploys the servers (the provider's ProviderPlan.redeploys)

    @property
    def key(self) -> str:
        return f"{self.address}#{self.deposed}" if self.deposed else self.address

    def to_json(self) -> dict[str, Any]:
        # shallow on purpose (dataclasses.asdict deep-copies every value: slow on large plans)
        d = {f: getattr(self, f) for f in _CHANGE_FIELDS}
        d["attributes"] = [{"path": a.path, "before": a.before, "after": a.after,
                            "forces_replace": a.forces_replace} for a in self.attributes]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Change:
        d = dict(d)
        d["attributes"] = [AttributeChange(**a) for a in d.get("attributes", [])]
        d["action"] = Action(d["action"])
        d["kind"] = ResourceKind(d["kind"])
        return cls(**d)


_CHANGE_FIELDS = tuple(f for f in Change.__dataclass_fields__)


@dataclass
class Plan:
    """A reviewed set of changes, tied to the state and config it was made from."""

    changes: list[Change]
    lineage: str | None
    serial: int
    config_digest: str
    config_path: str
    refreshed: bool = True
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    destroy: bool = False
    created_at: str = field(default_factory=utc_now)
    infraplan_version: str = ""
    desired_config: dict[str, Any] | None = None  # redacted snapshot of desired resources, for history
    secrets: frozenset[str] = field(default_factory=frozenset, repr=False)  # never serialised
    cost: dict[str, Any] | None = None  # before/after/delta $ per hour (infraplan.cost.summarise)

    def __post_init__(self) -> None:
        if not self.infraplan_version:
            from infraplan import __version__

            self.infraplan_version = __version__

    # -- views -------------------------------------------------------------
    def summary(self) -> dict[str, int]:
        counts = {a: 0 for a in ACTIONS}
        for c in self.changes:
            counts[c.action] += 1
        return {
            "add": counts[Action.CREATE] + counts[Action.REPLACE],
            "change": counts[Action.UPDATE],
            "destroy": counts[Action.DELETE] + counts[Action.REPLACE],
            "replace": counts[Action.REPLACE],
            "noop": counts[Action.NOOP],
            "refresh": counts[Action.REFRESH],
        }

    def actionable(self) -> list[Change]:
        return [c for c in self.changes if c.action not in (Action.NOOP,)]

    @property
    def has_changes(self) -> bool:
        return any(c.action in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE) for c in self.changes)

    # -- serialisation -----------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The documented plan JSON, with sensitive values redacted."""
        from infraplan.util.redact import redact

        return redact(self._to_json_raw(), self.secrets)

    def _to_json_raw(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "infraplan_version": self.infraplan_version,
            "created_at": self.created_at,
            "state": {"lineage": self.lineage, "serial": self.serial},
            "config": {"path": self.config_path, "digest": self.config_digest},
            "refreshed": self.refreshed,
            "destroy": self.destroy,
            "summary": self.summary(),
            "changes": [c.to_json() for c in self.changes],
            "outputs": self.outputs,
            "diagnostics": self.diagnostics,
            "desired_config": self.desired_config,
            "cost": self.cost,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        if d.get("format_version") != FORMAT_VERSION:
            from infraplan.errors import StalePlanError

            raise StalePlanError(
                f"plan format {d.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
            )
        return cls(
            changes=[Change.from_json(c) for c in d["changes"]],
            lineage=d["state"]["lineage"],
            serial=d["state"]["serial"],
            config_digest=d["config"]["digest"],
            config_path=d["config"]["path"],
            refreshed=d.get("refreshed", True),
            outputs=d.get("outputs", {}),
            diagnostics=d.get("diagnostics", []),
            destroy=d.get("destroy", False),
            created_at=d["created_at"],
            infraplan_version=d.get("infraplan_version", ""),
            desired_config=d.get("desired_config"),
            cost=d.get("cost"),
        )

    def digest(self) -> str:
        """A hash of what the plan does (not when it was made)."""
        body = self.to_json()  # redacted: a saved plan (redacted on disk) hashes the same
        body.pop("created_at", None)
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


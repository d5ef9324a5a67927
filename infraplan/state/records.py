"""What the state holds, as Python values: resource records, snapshots, history and audit
entries, drift runs; and how a resource row is encoded in either backend's tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from infraplan.models.kinds import ResourceKind

#: what a stored resource's status may be
RESOURCE_STATUSES = frozenset({"creating", "updating", "deleting", "ready", "failed", "tainted"})
#: the status an intent leaves a resource in until its result is recorded
ACTION_STATUS = {"create": "creating", "update": "updating", "delete": "deleting"}


def dumps(value: Any) -> str:
    """The stored JSON form (sorted keys: equal values are equal text)."""
    return json.dumps(value, sort_keys=True)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass
class ResourceRecord:
    """One object in state. `deposed` is "" for the current object of an address."""

    address: str
    deposed: str
    kind: ResourceKind
    provider: str | None
    status: str
    attributes: dict
    pending: dict | None
    dependencies: list[str]
    error: str | None
    created_at: str
    updated_at: str

    @property
    def is_deposed(self) -> bool:
        return self.deposed != ""


RESOURCE_KEYS = ("address", "deposed", "kind", "provider", "status", "attributes", "pending",
                 "dependencies", "error", "created_at", "updated_at")
RESOURCE_COLUMNS = ", ".join(RESOURCE_KEYS)


def record_from_row(row: tuple) -> ResourceRecord:
    """A `resources` row (columns in RESOURCE_KEYS order) as a record."""
    a, d, kind, provider, status, attrs, pending, deps, error, created, updated = row
    return ResourceRecord(
        a, d, ResourceKind(kind), provider, status, json.loads(attrs), loads(pending),
        json.loads(deps), error, created, updated,
    )


def row_from_record(record: ResourceRecord) -> dict:
    """The stored form of `record`."""
    return {
        "address": record.address, "deposed": record.deposed, "kind": str(record.kind),
        "provider": record.provider, "status": record.status,
        "attributes": dumps(record.attributes),
        "pending": None if record.pending is None else dumps(record.pending),
        "dependencies": dumps(record.dependencies), "error": record.error,
        "created_at": record.created_at, "updated_at": record.updated_at,
    }


@dataclass
class StateSnapshot:
    """A consistent view of the whole state at one serial."""

    lineage: str | None
    serial: int
    resources: list[ResourceRecord] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    sensitive_outputs: frozenset[str] = frozenset()

    @classmethod
    def empty(cls) -> StateSnapshot:
        return cls(lineage=None, serial=0)

    def get(self, address: str, deposed: str = "") -> ResourceRecord | None:
        for r in self.resources:
            if r.address == address and r.deposed == deposed:
                return r
        return None

    def current(self) -> dict[str, ResourceRecord]:
        """Current (non-deposed) objects by address."""
        return {r.address: r for r in self.resources if not r.deposed}

    def deposed(self) -> list[ResourceRecord]:
        return [r for r in self.resources if r.deposed]


@dataclass
class HistoryEntry:
    """One plan/apply/destroy run, as recorded by `add_history`."""

    id: int
    operation: str
    plan_hash: str | None
    summary: dict
    who: str | None
    started_at: str | None
    finished_at: str | None
    status: str
    config_digest: str | None
    desired_config: dict | None


HISTORY_COLUMNS = (
    "id, operation, plan_hash, summary, who, started_at, finished_at, status, "
    "config_digest, desired_config"
)


def history_from_row(row: tuple) -> HistoryEntry:
    (id_, operation, plan_hash, summary, who, started, finished, status, digest, desired) = row
    return HistoryEntry(id_, operation, plan_hash, json.loads(summary), who, started,
                        finished, status, digest, loads(desired))


@dataclass
class AuditEntry:
    """One append-only audit event."""

    id: int
    at: str
    event: str
    address: str | None
    details: dict | None
    who: str | None


@dataclass
class DriftRun:
    """One `infraplan drift` run, as recorded by `add_drift_run`."""

    id: int
    started_at: str
    finished_at: str | None
    duration_s: float | None
    exit_code: int
    counts: dict
    findings: list
    checked: int | None
    who: str | None

"""Drift findings and the report: kinds, severities, evidence, fingerprints, the JSON shape."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from infraplan.plan.refresh import Observation
from infraplan.util.time import iso_utc

FORMAT_VERSION = "1.0"
KINDS = ("missing", "changed", "unhealthy", "orphaned", "idle", "error")
EXIT_CLEAN, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2
# How serious each kind of finding is, for an alert block's `min_severity`.
SEVERITY = {"idle": "info", "changed": "warning", "orphaned": "warning",
            "missing": "error", "unhealthy": "error", "error": "error"}
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}


@dataclass
class Evidence:
    """Expected vs seen for one field, and which endpoint or API said so."""

    field: str
    expected: Any
    seen: Any
    source: str
    against: str = "state"  # "state", "config" or "expected"


@dataclass
class Finding:
    """One piece of drift (or one resource that could not be asked)."""

    kind: str
    address: str
    summary: str
    evidence: list[Evidence] = field(default_factory=list)
    provider: str | None = None
    instance_id: str | None = None
    detail: str | None = None
    resource: dict[str, Any] = field(default_factory=dict)
    new: bool | None = None
    first_seen: str | None = None

    @property
    def fingerprint(self) -> str:
        body = {"kind": self.kind, "address": self.address,
                "evidence": [[e.field, e.expected, e.seen, e.against] for e in self.evidence]}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["fingerprint"] = self.fingerprint
        return d


@dataclass
class DriftReport:
    """The outcome of one drift run."""

    started_at: str
    finished_at: str = ""
    duration_s: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alerts: dict[str, Any] = field(default_factory=dict)
    alert_targets: list[str] = field(default_factory=list)  # redacted: "name: scheme://…"
    observations: dict[str, Observation] = field(default_factory=dict, repr=False)  # for --plan-out

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in KINDS}
        for f in self.findings:
            out[f.kind] += 1
        return out

    @property
    def drift(self) -> bool:
        return any(f.kind != "error" for f in self.findings)

    @property
    def exit_code(self) -> int:
        if any(f.kind == "error" for f in self.findings):
            return EXIT_ERROR
        return EXIT_DRIFT if self.drift else EXIT_CLEAN

    def to_json(self) -> dict[str, Any]:
        from infraplan import __version__
        from infraplan.util.redact import redact

        return redact({
            "format_version": FORMAT_VERSION, "infraplan_version": __version__,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 3), "state": self.state, "config": self.config,
            "checked": self.checked, "exit_code": self.exit_code, "drift": self.drift,
            "counts": self.counts(), "findings": [f.to_json() for f in self.findings],
            "skipped": self.skipped, "notes": self.notes, "alerts": self.alerts,
            "alert_targets": self.alert_targets,
        })


def now_iso(ts: float | None = None) -> str:
    return iso_utc(time.time() if ts is None else ts)

"""Drift detection: where the running fleet has moved away from the state and the config.

`run_drift(workspace, options)` reads one consistent state snapshot (no lock),
refreshes every replica through its provider and probes its server, all with
bounded concurrency and per-probe timeouts, lists instances for orphans, and
returns a `DriftReport`. It never writes resource state; it records the run in
the ``drift_runs`` table and request counters in ``drift_activity`` (neither
bumps the serial).

Kinds of finding:

    missing    a replica in state whose process / cluster / server no longer exists
    changed    the real thing differs from state or config (replica count, model,
               revision, served name, server args; accelerators/cloud/region/spot
               when a provider's read() reports them)
    unhealthy  exists but /ready (/health where there is none) or /health_generate fails
               (after retries)
    orphaned   an instance carrying this project's marks that is in no state
    idle       a serving replica whose request counter has not moved for longer
               than the idle window (its own /metrics)
    error      the provider, cloud or server could not be asked (timeout, garbage)

Exit codes: 0 no drift; 2 drift found; 1 error (any ``error`` finding, or the
run itself failed): a resource that cannot be asked is never "no drift".

Report JSON (``format_version`` "1.0")::

    {
      "format_version": "1.0",
      "infraplan_version": "0.1.0",
      "started_at": "2026-11-23T13:00:00Z", "finished_at": "…", "duration_s": 1.234,
      "state": {"path": "…/infraplan.db", "lineage": "…", "serial": 7},
      "config": {"path": "…", "digest": "…"},
      "checked": {"replicas": 12, "fleets": 3, "instances_listed": 12},
      "exit_code": 2, "drift": true,
      "counts": {"missing": 1, "changed": 1, "unhealthy": 0, "orphaned": 0, "idle": 0, "error": 0},
      "findings": [
        {"kind": "changed", "address": "fleet.chat[1]", "provider": "local",
         "instance_id": "…", "summary": "model_revision differs from state",
         "evidence": [{"field": "model_revision", "expected": "abc123", "seen": "def456",
                       "against": "state", "source": "http://127.0.0.1:30001/model_info"}],
         "detail": null, "resource": {…}, "fingerprint": "sha256…",
         "new": true, "first_seen": "2026-11-23T13:00:00Z"}
      ],
      "skipped": [{"address": "fleet.chat[2]", "reason": "being created by a running apply"}],
      "notes": ["…"],
      "alerts": {"appeared": 1, "cleared": 0, "sent": 1, "error": null},
      "alert_targets": ["oncall: slack://…", "--alert: json://…"]
    }

Alert destinations come from the config's ``alert`` blocks whose `events` include
``drift`` and from ``--alert``; only their schemes are ever shown. A block's
`min_severity` narrows what it gets (see `SEVERITY`). Idle windows come from each
fleet's ``idle_after``; ``--idle-after`` overrides them for every fleet.

`evidence[].against` says what the seen value was compared with: ``state``,
``config`` or ``expected`` (a fact such as "answers 200"). A finding's
`fingerprint` hashes its kind, address and evidence (not `detail`, which may
vary between runs); alerts are de-duplicated on it.
"""

from infraplan.drift.cleanup import CleanupItem, CleanupPlan, execute_cleanup, plan_cleanup
from infraplan.drift.detect import detect
from infraplan.drift.findings import (
    EXIT_CLEAN,
    EXIT_DRIFT,
    EXIT_ERROR,
    FORMAT_VERSION,
    KINDS,
    SEVERITY,
    DriftReport,
    Evidence,
    Finding,
    now_iso,
)
from infraplan.drift.orphans import known_ids, list_orphans, orphan_finding
from infraplan.drift.probe import Probe, Prober
from infraplan.drift.run import alert_targets, plan_from_report, run_drift, send_drift_alerts
from infraplan.drift.settings import DriftSettings, idle_window, settings_from_config, watches_idle

__all__ = ["EXIT_CLEAN", "EXIT_DRIFT", "EXIT_ERROR", "FORMAT_VERSION", "KINDS", "SEVERITY", "CleanupItem", "CleanupPlan",
           "DriftReport", "DriftSettings", "Evidence", "Finding", "Probe", "Prober", "alert_targets", "detect",
           "execute_cleanup", "idle_window", "known_ids", "list_orphans", "now_iso", "orphan_finding",
           "plan_cleanup", "plan_from_report", "run_drift", "send_drift_alerts", "settings_from_config",
           "watches_idle"]

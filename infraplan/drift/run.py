"""The drift run with its records: the run table, request counters, alerts, and a plan from a report."""

from __future__ import annotations

from typing import Any

from infraplan.drift.detect import detect
from infraplan.drift.findings import SEVERITY, SEVERITY_RANK, DriftReport
from infraplan.drift.settings import DriftSettings, settings_from_config, watches_idle
from infraplan.errors import StateError


def run_drift(ws, settings: DriftSettings | None = None, *, finders: list | None = None,
              alert_urls: list[str] | None = None, record: bool = True) -> DriftReport:
    """Detect drift for a Workspace, record the run and send alerts. Takes no lock; writes no resource state."""
    from infraplan.util.identity import who

    if not ws.state.exists():
        raise StateError(f"no state at {ws.state}: nothing has been applied yet (run `infraplan apply`)")
    config = ws.config
    s = settings or settings_from_config(config)
    store = ws.store()  # opens (and upgrades the schema), no lock
    try:
        snapshot = store.snapshot()
        providers = ws.providers(config)
        try:
            report, activity = detect(config, snapshot, providers, s, activity=store.drift_activity(), finders=finders)
        finally:
            providers.close()
        report.state["path"] = str(ws.state.path.resolve()) if ws.state.is_file else ws.state.display
        if record:
            if watches_idle(s):
                store.set_drift_activity(activity)
            urls = list(alert_urls if alert_urls is not None else s.alerts)
            report.alert_targets = alert_targets(urls, s.alert_names)
            report.alerts = send_drift_alerts(store, report, urls, s.alert_min_severity)
            store.add_drift_run(started_at=report.started_at, finished_at=report.finished_at,
                                duration_s=round(report.duration_s, 3), exit_code=report.exit_code,
                                counts=report.counts(), checked=report.checked.get("replicas", 0), who=who(),
                                findings=[{"kind": f.kind, "address": f.address, "summary": f.summary,
                                           "fingerprint": f.fingerprint} for f in report.findings])
        return report
    finally:
        store.close()


def alert_targets(urls: list[str], names: dict[str, str]) -> list[str]:
    """Where alerts go, for output: ``"oncall: slack://…"``; never the URL itself."""
    from infraplan.alerts import redact_url

    return [f"{names.get(u, '--alert')}: {redact_url(u)}" for u in urls]


def send_drift_alerts(store, report: DriftReport, urls: list[str], min_severity: dict[str, str]) -> dict[str, Any]:
    """Track the findings under topic ``drift`` and alert `urls`; a URL with a least severity
    gets only findings that severe, de-duplicated under its own topic (``drift:warning``)."""
    from dataclasses import replace

    from infraplan.alerts import track_and_alert

    groups: dict[str, list[str]] = {}
    for u in urls:
        groups.setdefault(min_severity.get(u) or "info", []).append(u)
    summary = track_and_alert(store, "drift", report, urls=groups.pop("info", []))
    for sev, group in sorted(groups.items(), key=lambda kv: SEVERITY_RANK[kv[0]]):
        picked = [replace(f) for f in report.findings if SEVERITY_RANK[SEVERITY[f.kind]] >= SEVERITY_RANK[sev]]  # copies: keep `new`
        extra = track_and_alert(store, f"drift:{sev}", picked, urls=group, label=f"{sev} and above")
        summary["sent"] += extra["sent"]
        if extra["error"]:
            summary["error"] = "; ".join(e for e in (summary["error"], extra["error"]) if e)
    return summary


def plan_from_report(ws, report: DriftReport, parallelism: int = 10):
    """The plan that brings the world back to the config, made from the run's own observations."""
    from infraplan.plan.planner import PlanOptions, make_plan

    config = ws.config
    providers = ws.providers(config)
    try:
        plan = make_plan(config, ws.snapshot(), providers, PlanOptions(parallelism=parallelism),
                         observations=report.observations)
    finally:
        providers.close()
    plan.secrets = frozenset(config.sensitive_values)
    plan.desired_config = ws._desired_snapshot(plan)
    return plan

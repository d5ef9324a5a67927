"""Refresh-only plans: accept what refresh observed into state, touching no infrastructure.

As Terraform's ``-refresh-only``: every change is a ``refresh`` action (the
executor writes it to state without a provider call). A replica whose server is
gone is a ``refresh`` with no ``after``: its record is removed from state (and its
fleet's endpoints leave it out), as Terraform drops what refresh found deleted;
`infraplan plan` then creates it again. Tainted and failed replicas keep their status.
"""

from __future__ import annotations

from infraplan.diagnostics import Diagnostic
from infraplan.plan.diff import diff_attributes
from infraplan.errors import StalePlanError
from infraplan.plan.model import Change, Plan
from infraplan.plan.refresh import record_key, refresh
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind

OPERATION = "apply-refresh-only"


def refresh_only_plan(ws, *, parallelism: int = 10, targets: tuple[str, ...] = ()) -> Plan:
    """A Plan of `refresh` changes for the replicas whose real attributes differ from state."""
    config = ws.config
    snapshot = ws.snapshot()
    providers = ws.providers(config)
    try:
        observations = refresh(snapshot.resources, providers, parallelism=parallelism)
    finally:
        providers.close()
    changes: list[Change] = []
    diags: list[Diagnostic] = []
    for rec in snapshot.resources:
        if rec.kind != ResourceKind.REPLICA or rec.deposed:
            continue
        if targets and not any(rec.address == t or rec.address.startswith(t + "[") for t in targets):
            continue
        obs = observations.get(record_key(rec))
        if obs is None:
            continue
        if obs.error:
            diags.append(Diagnostic(f"refresh of {rec.address} failed: {obs.error}", severity="warning", path=rec.address))
            continue
        if not obs.result.exists:
            detail = f": {obs.result.detail}" if obs.result.detail else ""
            changes.append(Change(
                address=rec.address, kind=ResourceKind.REPLICA, action=Action.REFRESH, provider=rec.provider,
                provider_type=(rec.attributes or {}).get("provider_type"), before=rec.attributes, after=None,
                dependencies=list(rec.dependencies or []), fleet=(rec.attributes or {}).get("fleet"),
                reasons=[f"the real server is gone (refresh found nothing{detail}); its record is removed from "
                         "state (`infraplan plan` then creates it again)"]))
            continue
        if rec.status not in ("ready", "creating"):
            continue  # tainted/failed: writing would clear the status that asks for a replacement
        after = {**rec.attributes, **obs.result.attributes}
        attr_changes = diff_attributes(rec.attributes, after)
        if not attr_changes and rec.status == "ready":
            continue
        changes.append(Change(
            address=rec.address, kind=ResourceKind.REPLICA, action=Action.REFRESH, provider=rec.provider,
            provider_type=(rec.attributes or {}).get("provider_type"), before=rec.attributes, after=after,
            attributes=attr_changes, dependencies=list(rec.dependencies or []),
            fleet=(rec.attributes or {}).get("fleet"),
            reasons=["accepts what refresh found into state (no infrastructure change)"],
        ))
    changes += _fleet_endpoints(snapshot, {c.address for c in changes if c.after is None})
    plan = Plan(changes=sorted(changes, key=lambda c: c.address), lineage=snapshot.lineage, serial=snapshot.serial,
                config_digest=config.digest, config_path=str(config.root), refreshed=True,
                diagnostics=[d.to_json() for d in diags])
    plan.secrets = frozenset(config.sensitive_values)
    plan.desired_config = ws._desired_snapshot(plan)
    return plan


def _fleet_endpoints(snapshot, gone: set[str]) -> list[Change]:
    """Fleet entries whose endpoints list a replica that is gone: refreshed without it."""
    replicas = [r for r in snapshot.resources if r.kind == ResourceKind.REPLICA and not r.deposed]
    out = []
    for fleet in sorted({(r.attributes or {}).get("fleet") for r in replicas if r.address in gone} - {None}):
        rec = snapshot.get(fleet)
        if rec is None:
            continue
        kept = sorted((r.attributes for r in replicas if r.address not in gone and r.attributes.get("fleet") == fleet),
                      key=lambda a: a.get("index", 0))
        endpoints = list(dict.fromkeys(a["endpoint"] for a in kept if a.get("endpoint")))
        after = {**rec.attributes, "endpoints": endpoints, "endpoint": endpoints[0] if endpoints else None}
        attr_changes = diff_attributes(rec.attributes, after)
        if attr_changes:
            out.append(Change(address=fleet, kind=ResourceKind.FLEET, action=Action.REFRESH, provider=rec.provider,
                              before=rec.attributes, after=after, attributes=attr_changes,
                              dependencies=list(rec.dependencies or []),
                              reasons=["its endpoints leave out the replicas that are gone"]))
    return out


def check_saved(ws, saved: Plan, *, parallelism: int = 10) -> Plan:
    """Re-make a saved refresh-only plan and refuse it if the state or the world moved since."""
    snap = ws.snapshot()
    if saved.lineage and snap.lineage and saved.lineage != snap.lineage:
        raise StalePlanError("the saved refresh-only plan belongs to another state")
    if saved.serial != snap.serial:
        raise StalePlanError(f"the saved refresh-only plan is stale (state serial {saved.serial} -> {snap.serial}); "
                             "run `infraplan plan --refresh-only` again")
    fresh = refresh_only_plan(ws, parallelism=parallelism)
    if fresh.digest() != saved.digest():
        raise StalePlanError("the saved refresh-only plan is stale: the real fleet changed since it was made")
    return fresh


def apply_refresh_only(ws, plan: Plan, **kw):
    """Write the refresh changes to state under the lock; audits each accepted resource."""
    from infraplan.util.redact import redact
    from infraplan.util.identity import who

    if any(c.action != Action.REFRESH for c in plan.changes):
        raise StalePlanError("not a refresh-only plan: it has changes other than refresh")
    result = ws.apply(plan, operation=OPERATION, **kw)
    store = ws.store()
    try:
        for c in plan.changes:
            if f"write:{c.key}" in result.done:
                store.audit("refresh-only", address=c.address, who=who(), details=redact({
                    "accepted": [{"path": a.path, "before": a.before, "after": a.after} for a in c.attributes]},
                    plan.secrets))
            elif f"forget:{c.key}" in result.done:
                store.audit("refresh-only", address=c.address, who=who(),
                            details={"removed": "the real server is gone"})
    finally:
        store.close()
    return result

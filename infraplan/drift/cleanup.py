"""Cleanup: remove orphans (and idle replicas), with approval, audited."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from infraplan.drift.detect import detect
from infraplan.drift.findings import Finding
from infraplan.drift.orphans import known_ids, list_orphans, orphan_finding
from infraplan.drift.settings import DriftSettings
from infraplan.errors import InfraplanError
from infraplan.models.actions import Action
from infraplan.providers.contract import Instance


@dataclass
class CleanupItem:
    """One thing `infraplan cleanup` removes."""

    kind: str  # "orphaned" or "idle"
    address: str
    summary: str
    instance: Instance | None = None
    lister: Any = field(default=None, repr=False)
    removed: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": self.address, "summary": self.summary, "removed": self.removed,
                "error": self.error, "instance": asdict(self.instance) if self.instance else None}


@dataclass
class CleanupPlan:
    """What cleanup would remove, made from a fresh look at the world."""

    items: list[CleanupItem]
    errors: list[Finding] = field(default_factory=list)
    providers: Any = field(default=None, repr=False)

    def render(self) -> str:
        if not self.items:
            lines = ["Nothing to clean up: no orphaned or idle resources found."]
        else:
            lines = ["Cleanup will remove:"]
            for i in self.items:
                lines.append(f"  - [{i.kind}] {i.address}: {i.summary}")
            if any(i.kind == "idle" for i in self.items):
                lines.append("  (idle replicas are still declared in the config: the next apply creates them again "
                             "unless you lower `replicas`)")
        for e in self.errors:
            lines.append(f"  ! {e.address}: {e.summary}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"items": [i.to_json() for i in self.items], "errors": [e.to_json() for e in self.errors]}


def plan_cleanup(ws, settings: DriftSettings, *, finders: list | None = None, include_idle: bool = False) -> CleanupPlan:
    """List orphans (and idle replicas when asked) now; nothing is changed."""
    from infraplan.plan.expand import expand

    config = ws.config
    ro = ws.readonly_store(secrets=True)
    try:
        snapshot = ro.snapshot()
        activity = ro.drift_activity()
    finally:
        ro.close()
    providers = ws.providers(config)
    keys = {r.provider for r in snapshot.resources if r.kind == "replica" and r.provider} | \
           {d.provider for d in expand(config).values() if d.kind == "replica" and d.provider}
    orphans, _, errors = list_orphans(snapshot, providers, keys, finders or [], settings.deadline_s * 2)
    items = [CleanupItem("orphaned", f"{i.provider}/{i.instance_id}", orphan_finding(i).summary +
                         (f" ({orphan_finding(i).detail})" if orphan_finding(i).detail else ""), instance=i, lister=lister)
             for i, lister in orphans]
    if include_idle:
        report, _ = detect(config, snapshot, providers, settings.model_copy(update={"orphans": False}), activity=activity)
        items += [CleanupItem("idle", f.address, f.summary) for f in report.findings if f.kind == "idle"]
        errors += [f for f in report.findings if f.kind == "error"]
    return CleanupPlan(items=items, errors=errors, providers=providers)


def execute_cleanup(ws, todo: CleanupPlan) -> CleanupPlan:
    """Remove what `todo` lists: orphans under the state lock, idle replicas through an apply; all audited."""
    from infraplan.plan.model import Change, Plan
    from infraplan.util.identity import who

    ws.authorize("cleanup", [i.address for i in todo.items])
    store = ws.store()
    try:
        orphans = [i for i in todo.items if i.kind == "orphaned"]
        if orphans:
            with store.lock("cleanup", who=who()):
                known = known_ids(store.snapshot())
                for item in orphans:
                    if item.instance.instance_id in known:
                        item.error = "it is in state now (an apply recorded it); left alone"
                        continue
                    try:
                        item.lister.delete_instance(item.instance)
                        item.removed = True
                    except Exception as exc:  # noqa: BLE001 - reported per item
                        item.error = str(exc) if isinstance(exc, InfraplanError) else f"{type(exc).__name__}: {exc}"
                    store.audit("cleanup-orphan", address=item.address, who=who(),
                                details={"removed": item.removed, "error": item.error, "summary": item.summary,
                                         "instance": asdict(item.instance)})
        idle = [i for i in todo.items if i.kind == "idle"]
        if idle:
            snap = store.snapshot()
            changes = []
            for item in idle:
                rec = snap.get(item.address)
                if rec is None:
                    item.error = "no longer in state"
                    continue
                changes.append(Change(address=rec.address, kind="replica", action=Action.DELETE, provider=rec.provider,
                                      provider_type=(rec.attributes or {}).get("provider_type"), before=rec.attributes,
                                      dependencies=list(rec.dependencies or []), fleet=(rec.attributes or {}).get("fleet"),
                                      reasons=[f"cleanup: {item.summary}"], risks=["destroys a serving replica"]))
            if changes:
                plan = Plan(changes=changes, lineage=snap.lineage, serial=snap.serial,
                            config_digest=ws.config.digest, config_path=str(ws.config.root))
                result = ws.apply(plan, operation="cleanup")
                for item in idle:
                    if item.error:
                        continue
                    nid = f"delete:{item.address}"
                    item.removed = nid in result.done
                    item.error = None if item.removed else result.failed.get(nid, "skipped")
                    store.audit("cleanup-idle", address=item.address, who=who(),
                                details={"removed": item.removed, "error": item.error, "summary": item.summary})
    finally:
        store.close()
        if todo.providers is not None:
            todo.providers.close()
    return todo

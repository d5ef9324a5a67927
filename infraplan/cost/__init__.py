"""Fleet cost in $ per hour, from a provider's per-replica estimate.

A provider's ``estimate(attributes)`` describes one replica (cloud, region,
instance, ``hourly`` price and more, see `infraplan.providers.contract.Provider.estimate`);
here it becomes a fleet cost (x replicas) and the plan's before/after/delta.
"""

from __future__ import annotations
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind

from typing import Any

# Provider types that run on this machine or nowhere: they cost nothing, whatever
# accelerators a fleet records (the local provider does not allocate them).
FREE_PROVIDER_TYPES = {
    "local": "runs on this machine: $0; recorded accelerators are not allocated",
    "null": "state only: $0",
}


#: hours in a month for monthly figures (365 x 24 / 12, the convention cloud price lists use)
HOURS_PER_MONTH = 730


def monthly(hourly: float | None) -> float | None:
    """$/hour as $/month (`HOURS_PER_MONTH`); None (not priced) stays None."""
    return None if hourly is None else round(hourly * HOURS_PER_MONTH, 2)


def free_estimate(provider_type: str | None) -> dict[str, Any] | None:
    """The $0 estimate of a provider type in `FREE_PROVIDER_TYPES`, else None."""
    note = FREE_PROVIDER_TYPES.get(provider_type or "")
    if note is None:
        return None
    return {"cloud": provider_type, "hourly": 0.0, "hourly_on_demand": 0.0, "hourly_spot": None,
            "use_spot": False, "note": note}


def fleet_cost(unit: dict[str, Any] | None, replicas: int,
               throughput_tokens_per_s: float | None = None) -> dict[str, Any] | None:
    """The cost of `replicas` replicas priced at `unit` (one replica's estimate).

    With a throughput (output tokens/s per replica), also $ per 1M output tokens:
    hourly / (throughput x 3600) x 1e6.
    """
    if unit is None:
        return None
    hourly = float(unit.get("hourly") or 0.0)
    out: dict[str, Any] = {
        "replicas": replicas,
        "unit": unit,
        "hourly": round(hourly * replicas, 6),
    }
    for key in ("hourly_on_demand", "hourly_spot"):
        v = unit.get(key)
        out[key] = None if v is None else round(float(v) * replicas, 6)
    if throughput_tokens_per_s:
        out["throughput_tokens_per_s"] = throughput_tokens_per_s
        out["usd_per_million_output_tokens"] = round(hourly / (throughput_tokens_per_s * 3600) * 1e6, 6)
    return out


def summarise(before: dict[str, float | None], after: dict[str, float | None],
              shared_before: dict[str, dict] | None = None, shared_after: dict[str, dict] | None = None) -> dict[str, Any]:
    """The plan-level cost: `before`/`after` map fleet address -> $/hour (None: not priced).

    `shared_*` map a key to one machine many fleets share (a SkyServe controller),
    counted once per side.
    """
    shared_before, shared_after = shared_before or {}, shared_after or {}
    unpriced = sorted(a for a, v in {**before, **after}.items() if v is None)
    b = sum(v for v in before.values() if v) + sum(float(x.get("hourly") or 0) for x in shared_before.values())
    a = sum(v for v in after.values() if v) + sum(float(x.get("hourly") or 0) for x in shared_after.values())
    out = {"currency": "USD", "before_hourly": round(b, 6), "after_hourly": round(a, 6),
           "delta_hourly": round(a - b, 6), "unpriced": unpriced}
    if shared_before or shared_after:
        out["shared"] = [dict(v, key=k, before=k in shared_before, after=k in shared_after)
                         for k, v in sorted({**shared_before, **shared_after}.items())]
    return out


def money(v: float | None) -> str:
    """``12.5`` -> ``$12.50``; None -> ``?``."""
    if v is None:
        return "?"
    return f"-${-v:,.2f}" if v < 0 else f"${v:,.2f}"


def describe(cost: dict[str, Any]) -> str:
    """One line for a fleet: where, how many, and what it costs."""
    unit = cost.get("unit") or {}
    where = "/".join(str(unit[k]) for k in ("cloud", "region") if unit.get(k))
    inst = unit.get("instance_type")
    parts = [f"{cost['replicas']} x {money(unit.get('hourly'))}/h"]
    if where or inst:
        parts.append(" ".join(x for x in (where, inst and f"({inst})") if x))
    if unit.get("use_spot"):
        parts.append("spot")
    line = f"{money(cost['hourly'])}/h = " + ", ".join(parts)
    if cost.get("hourly_on_demand") is not None and cost.get("hourly_spot") is not None:
        line += f" [on-demand {money(cost['hourly_on_demand'])}/h, spot {money(cost['hourly_spot'])}/h]"
    if cost.get("usd_per_million_output_tokens") is not None:
        line += f"; {money(cost['usd_per_million_output_tokens'])} per 1M output tokens"
    return line


def _unit_key(provider_key: str | None, attrs: dict[str, Any], skip: frozenset[str]) -> str:
    import json

    body = {k: v for k, v in attrs.items() if k not in skip and k not in ("index", "port")}
    return json.dumps([provider_key, body], sort_keys=True, default=str)


def price_plan(changes: dict[str, Any], desired: dict[str, Any], current: dict[str, Any], providers,
               project_dir=None, throughputs: dict[str, float | None] | None = None):
    """Set ``cost`` on every fleet Change; return (plan cost summary, diagnostics).

    One provider estimate per fleet and side (before/after), cached by the replica
    attributes that matter, so a 10k-replica plan makes a handful of calls. GPU fit
    is checked for every desired fleet: an error when the model cannot fit, a
    warning when it is tight.
    """
    from infraplan.diagnostics import Diagnostic
    from infraplan.errors import InfraplanError, ProviderError
    from infraplan.cost.fit import check_fit

    diags: list[Diagnostic] = []
    throughputs = throughputs or {}
    cache: dict[str, dict | None] = {}

    def unit(provider_key: str | None, provider_type: str | None, attrs: dict[str, Any]) -> dict | None:
        provider = providers.get(provider_key)
        key = _unit_key(provider_key, attrs, frozenset(provider.computed))
        if key not in cache:
            est = provider.estimate(ResourceKind.REPLICA, attrs)
            cache[key] = est if est is not None else free_estimate(provider_type or provider.name)
        return cache[key]

    prior_reps: dict[str, list] = {}
    for rec in current.values():
        if rec.kind == ResourceKind.REPLICA and not getattr(rec, "deposed", ""):
            prior_reps.setdefault((rec.attributes or {}).get("fleet"), []).append(rec)

    before: dict[str, float | None] = {}
    after: dict[str, float | None] = {}
    shared_before: dict[str, dict] = {}
    shared_after: dict[str, dict] = {}
    for addr, fc in changes.items():
        if fc.kind != ResourceKind.FLEET or fc.deposed:
            continue
        d = desired.get(addr)
        first = changes.get(f"{addr}[0]")
        cost: dict[str, Any] = {"replicas": 0, "unit": None, "hourly": 0.0}
        if d is not None:
            n = int(d.attributes.get("replicas") or 0)
            attrs = (first.after or first.before) if first is not None else None
            if attrs:
                est, failed = None, False
                try:
                    est = unit(d.provider, d.provider_type, attrs)
                except ProviderError as exc:
                    failed = True
                    diags.append(Diagnostic(f"cannot place {addr}: {exc}", location=d.location, path=addr))
                priced = fleet_cost(est, n, throughputs.get(addr))
                cost = priced if priced is not None else {"replicas": n, "unit": None, "hourly": None}
                after[addr] = None if (failed or priced is None) else priced["hourly"]
                if (est or {}).get("controller") and n:
                    shared_after.setdefault(f"{d.provider}: skyserve-controller", est["controller"])
                model = desired.get(attrs.get("model") or "")
                fit = check_fit(model.attributes if model else {}, attrs.get("args") or {}, attrs.get("accelerators"),
                                (est or {}).get("gpu_memory_gib"), project_dir)
                cost["fit"] = fit.to_json()
                if fit.status in ("does_not_fit", "tight"):
                    name = attrs.get("model") or "the model"
                    if fit.status == "does_not_fit":
                        summary = (f"{name} does not fit on {attrs.get('accelerators')} of {addr}"
                                   + (f": needs {fit.required_gib:.1f} GiB per GPU, {fit.gpu} has {fit.gpu_memory_gib:g} GiB"
                                      if fit.required_gib is not None else ""))
                    else:
                        summary = (f"{name} is a tight fit on {attrs.get('accelerators')} of {addr}: "
                                   f"{fit.required_gib:.1f} of {fit.gpu_memory_gib:g} GiB per GPU")
                    diags.append(Diagnostic(summary, severity="error" if fit.status == "does_not_fit" else "warning",
                                            location=d.location, path=addr, detail=fit.detail()))
            else:
                after[addr] = 0.0
        recs = prior_reps.get(addr, [])
        if recs:
            try:
                prior_unit = unit(recs[0].provider, (recs[0].attributes or {}).get("provider_type"), recs[0].attributes or {})
            except InfraplanError:
                prior_unit = None
            prior = fleet_cost(prior_unit, len(recs))
            if (prior_unit or {}).get("controller"):
                shared_before.setdefault(f"{recs[0].provider}: skyserve-controller", prior_unit["controller"])
            before[addr] = prior["hourly"] if prior else None
            cost["before_hourly"] = before[addr]
        else:
            cost["before_hourly"] = 0.0
        after.setdefault(addr, cost.get("hourly"))
        window = _rollback_window(fc, changes, addr)
        if window and cost.get("before_hourly"):
            # blue-green keeps the old set serving as a fallback for the window after the switch
            extra = cost["before_hourly"]
            cost["rollback_window"] = {"window": window[0], "seconds": window[1], "extra_hourly": extra,
                                       "extra_total": round(extra * window[1] / 3600, 6)}
        if first is not None and first.rolls_out and ((fc.after or {}).get("rollout") or {}).get("strategy") == "canary" \
                and cost.get("hourly"):
            # a service fleet's canary runs the new version as a second service until it is promoted
            cost["canary_service"] = {"replicas": cost.get("replicas"), "extra_hourly": cost["hourly"]}
        fc.cost = cost
    for addr, rc in changes.items():  # routers on a cloud provider are VMs too (the local one costs nothing)
        if rc.kind != ResourceKind.ROUTER or rc.deposed:
            continue
        for attrs, side in ((rc.before, shared_before), (rc.after if rc.action != Action.DELETE else None, shared_after)):
            if not attrs:
                continue
            try:
                est = providers.get(rc.provider).estimate(ResourceKind.ROUTER, attrs)
            except ProviderError as exc:
                diags.append(Diagnostic(f"cannot place {addr}: {exc}", path=addr,
                                        location=getattr(desired.get(addr), "location", None)))
                continue
            if est:
                side[addr] = dict(est, note=f"{addr}: {est.get('note') or 'router'}")
    return summarise(before, after, shared_before, shared_after), diags


def _rollback_window(fc, changes: dict[str, Any], addr: str) -> tuple[str, float] | None:
    """(text, seconds) of a blue-green rollback window this plan will use, else None."""
    spec = (fc.after or {}).get("rollout") or {}
    if spec.get("strategy") != "blue_green" or not spec.get("rollback_window"):
        return None
    first = changes.get(f"{addr}[0]")
    if first is None or first.action != Action.REPLACE:
        return None
    from infraplan.models.types import parse_duration

    return spec["rollback_window"], parse_duration(spec["rollback_window"])


def over_budget(summary: dict[str, Any] | None, limit: float) -> None:
    """Raise PlanError when the plan's $/hour after apply exceeds `limit` (or cannot be told)."""
    from infraplan.errors import PlanError

    summary = summary or {}
    after = summary.get("after_hourly") or 0.0
    if after > limit:
        raise PlanError(f"the plan costs {money(after)}/h after apply, over --max-hourly-cost {money(limit)}/h")
    if summary.get("unpriced"):
        raise PlanError(f"--max-hourly-cost {money(limit)}/h cannot be checked: no price for "
                        + ", ".join(summary["unpriced"]))

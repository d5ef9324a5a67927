"""Compare the desired resources with (refreshed) state and decide one action per address.

The steps, in order, as Terraform's plan graph builder does them:
expand config -> refresh state -> walk the graph in creation order resolving
deferred references -> diff each resource -> deletions for what config no longer
has -> targets -> outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infraplan.plan.expand import DesiredResource, expand
from infraplan.diagnostics import Diagnostic, Diagnostics
from infraplan.plan.diff import diff_attributes
from infraplan.errors import ConfigError, PlanError
from infraplan.graph import CycleError, build_graph, creation_order, with_ancestors
from infraplan.plan.provider_checks import check_providers
from infraplan.plan.model import REASON_REPLACE_FORCED, REASON_REPLACE_REQUESTED, Change, Plan
from infraplan.providers.registry import ProviderSet
from infraplan.plan.refresh import Observation, record_key, refresh
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind
from infraplan.util.redact import REDACTED, redact

# Attributes of the fleet aggregate computed from its replicas at apply time.
FLEET_COMPUTED = ("endpoint", "endpoints")


@dataclass
class PlanOptions:
    refresh: bool = True
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    destroy: bool = False
    parallelism: int = 10
    force: bool = False  # roll out again a version whose rollout was rolled back


@dataclass
class _Ctx:
    state: dict[str, Any]  # address -> current record
    changes: dict[str, Change] = field(default_factory=dict)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    by_fleet: dict[str, list[Change]] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()  # masked in the reasons (util.redact)

    def add(self, key: str, change: Change) -> None:
        self.changes[key] = change
        if change.kind == ResourceKind.REPLICA and change.fleet:
            self.by_fleet.setdefault(change.fleet, []).append(change)


def make_plan(config, snapshot, providers: ProviderSet, options: PlanOptions | None = None,
              observations: dict[str, Observation] | None = None) -> Plan:
    """Build the Plan for `config` against the state `snapshot`."""
    from infraplan.config.expressions import UNKNOWN, resolve_deferred

    opts = options or PlanOptions()
    desired = {} if opts.destroy else expand(config)
    current = {r.address: r for r in snapshot.resources if not r.deposed}
    deposed = [r for r in snapshot.resources if r.deposed]
    used = {d.provider for d in desired.values()} | {r.provider for r in snapshot.resources}
    settings_diags = Diagnostics(check_providers(config))  # what `validate` reports too
    if settings_diags.has_errors():
        raise ConfigError(list(settings_diags))
    settings_diags.extend(_check_provider_settings(config, providers, used - {None}))
    if settings_diags.has_errors():
        raise PlanError(settings_diags.errors[0].one_line(), settings_diags.errors)
    if observations is None:
        observations = refresh(snapshot.resources, providers, parallelism=opts.parallelism) if opts.refresh else {}

    ctx = _Ctx(state=current, secrets=frozenset(config.sensitive_values))
    ctx.diagnostics.extend(config.warnings)  # the loader's (deprecated args, undeclared variable values)
    ctx.diagnostics.extend(settings_diags)
    for key, obs in observations.items():
        if obs.error:
            ctx.diagnostics.append(Diagnostic(f"refresh of {key} failed: {obs.error}", severity="warning", path=key))

    graph = build_graph({a: d.depends_on for a, d in desired.items()}) if desired else None
    try:
        order = creation_order(graph) if graph is not None else []
    except CycleError as exc:
        raise PlanError(str(exc)) from None

    def attrs_of(addr: str, attr: str) -> dict | None:
        change = ctx.changes.get(addr)
        if change is None:
            rec = current.get(addr)
            return rec.attributes if rec else None
        return None if attr in change.after_unknown else change.after

    def lookup(ref) -> Any:
        return ref_value(ref, attrs_of, UNKNOWN)

    # what config no longer declares
    for addr, rec in current.items():
        if addr in desired:
            continue
        obs = observations.get(addr)
        gone = obs is not None and obs.result is not None and not obs.result.exists
        reason = "destroy requested" if opts.destroy else "no longer in the configuration"
        if gone:
            reason += " (already gone: only the state entry is removed)"
        ctx.add(addr, Change(
            address=addr, kind=rec.kind, action=Action.DELETE, provider=rec.provider,
            provider_type=(rec.attributes or {}).get("provider_type"), reasons=[reason],
            before=rec.attributes, after=None, dependencies=list(rec.dependencies or []),
            fleet=(rec.attributes or {}).get("fleet") if rec.kind == ResourceKind.REPLICA else None,
        ))
    for rec in deposed:
        ctx.add(record_key(rec), Change(
            address=rec.address, kind=rec.kind, action=Action.DELETE, provider=rec.provider,
            reasons=["deposed object left by an interrupted replacement"], before=rec.attributes,
            dependencies=list(rec.dependencies or []), deposed=rec.deposed,
            fleet=(rec.attributes or {}).get("fleet"),
        ))

    for addr in order:
        d = desired[addr]
        attrs = d.attributes
        unknown: set[str] = set()
        if d.templated:
            # finish deferred references (fleet.x.endpoint) and unescape literal $${
            resolved = {}
            for k, v in attrs.items():
                rv = resolve_deferred(v, lookup)
                if rv is UNKNOWN or _contains_unknown(rv, UNKNOWN):
                    unknown.add(k)
                resolved[k] = v if k in unknown else rv
            attrs = resolved
        if d.kind.provider_backed:  # the provider plans them
            change = _plan_replica(d, attrs, unknown, ctx, providers, observations, opts)
        elif d.kind == ResourceKind.FLEET:
            change = _plan_fleet(d, attrs, unknown, ctx)
        else:
            change = _plan_plain(d, attrs, unknown, ctx)
        if addr in opts.replace and not d.kind.provider_backed and change.action in (Action.UPDATE, Action.NOOP, Action.REFRESH):
            change.action = Action.REPLACE
            change.reasons.append(REASON_REPLACE_REQUESTED)
        ctx.add(addr, change)

    # the config's lifecycle rules hold for `destroy` (which desires nothing) and scale-downs too
    _check_prevent_destroy(expand(config) if opts.destroy else desired, current, ctx)
    _mark_risks(ctx, desired)
    _plan_rollouts(ctx, desired)
    from infraplan.cost import price_plan  # one estimate per fleet, and the GPU-fit check

    plan_cost, cost_diags = price_plan(
        ctx.changes, desired, current, providers, project_dir=Path(str(config.root)),
        throughputs={a: rc.block.throughput_tokens_per_s for a, rc in config.fleets.items()})
    ctx.diagnostics.extend(cost_diags)

    changes = list(ctx.changes.values())
    if opts.targets:
        keep = with_ancestors(graph, _expand_targets(opts.targets, desired, current)) if graph is not None else set()
        keep |= {t for t in opts.targets if t in current}
        changes = [c for c in changes if c.address in keep or _targets_fleet(c, opts.targets)]

    for flag, addrs in (("--target", opts.targets), ("--replace", opts.replace)):
        for a in addrs:
            if a not in desired and a not in current and not any(
                    x.startswith(a + "[") for x in list(desired) + list(current)):
                ctx.diagnostics.append(Diagnostic(f"{flag} {a}: no such resource in the configuration or the state"))
    if opts.targets:
        ctx.diagnostics.append(Diagnostic(
            "resource targeting is in effect: this plan may not hold every change the configuration needs",
            severity="warning"))
    errors = ctx.diagnostics.errors
    if errors:
        raise PlanError(errors[0].one_line(), ctx.diagnostics)

    outputs = _plan_outputs(config, lookup, UNKNOWN, resolve_deferred) if not opts.destroy else {}
    return Plan(
        changes=_ordered(changes),
        lineage=snapshot.lineage,
        serial=snapshot.serial,
        config_digest=config.digest,
        config_path=str(config.root),
        refreshed=opts.refresh,
        outputs=outputs,
        diagnostics=ctx.diagnostics.to_json(),
        destroy=opts.destroy,
        cost=plan_cost,
    )


def _check_provider_settings(config, providers: ProviderSet, keys: set[str]) -> list[Diagnostic]:
    """The settings of every provider block the plan uses, each problem located in the config."""
    from infraplan.errors import InfraplanError

    out: list[Diagnostic] = []
    for key in sorted(keys):
        try:
            diags = providers.get(key).validate_settings()
        except InfraplanError:
            continue  # a provider that cannot be loaded is reported where it is used
        for d in diags:
            if d.location is None and d.path:
                d.location = config.location_of(d.path)
        out.extend(diags)
    return out


def ref_value(ref, attrs_of, unknown) -> Any:
    """The value a deferred reference (``fleet.chat.endpoint``) points at, or `unknown`.

    `attrs_of(address, attribute)` returns the attributes known for an address, or None.
    """
    if not ref.path:
        return unknown
    attrs = attrs_of(ref.instance_address, str(ref.path[0]))
    if attrs is None or ref.path[0] not in attrs:
        return unknown
    value = attrs[ref.path[0]]
    for step in ref.path[1:]:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return unknown
    return unknown if value is None else value


def _changed_names(changes) -> str:
    names = sorted({a.path.split(".")[0] for a in changes})
    return "changed: " + ", ".join(names)


def _contains_unknown(value, unknown) -> bool:
    if value is unknown:
        return True
    if isinstance(value, dict):
        return any(_contains_unknown(v, unknown) for v in value.values())
    if isinstance(value, list):
        return any(_contains_unknown(v, unknown) for v in value)
    return False


def _plan_plain(d: DesiredResource, attrs, unknown, ctx: _Ctx) -> Change:
    rec = ctx.state.get(d.address)
    ignore = set(d.lifecycle.ignore_changes) if d.lifecycle else set()
    if rec is None:
        return Change(address=d.address, kind=d.kind, action=Action.CREATE, reasons=["not in state"],
                      after=attrs, after_unknown=sorted(unknown),
                      dependencies=sorted(d.depends_on))
    after = {k: (rec.attributes.get(k) if k in ignore else v) for k, v in attrs.items()}
    attr_changes = diff_attributes(rec.attributes, after, unknown=unknown)
    action = Action.UPDATE if attr_changes else Action.NOOP
    return Change(address=d.address, kind=d.kind, action=action, before=rec.attributes, after=after,
                  after_unknown=sorted(unknown), attributes=attr_changes, dependencies=sorted(d.depends_on),
                  reasons=[_changed_names(attr_changes)] if attr_changes else [])


def _plan_fleet(d: DesiredResource, attrs, unknown, ctx: _Ctx) -> Change:
    rec = ctx.state.get(d.address)
    replica_changes = ctx.by_fleet.get(d.address, [])
    endpoints_change = any(c.action in (Action.CREATE, Action.REPLACE, Action.DELETE) for c in replica_changes)
    prior = rec.attributes if rec else None
    after = dict(attrs)
    ignore = set(d.lifecycle.ignore_changes) if d.lifecycle else set()
    if prior:
        for k in ignore:
            if k in prior:
                after[k] = prior[k]
    if endpoints_change or rec is None:
        unknown = set(unknown) | set(FLEET_COMPUTED)
        for k in FLEET_COMPUTED:
            after[k] = None
    elif prior:
        for k in FLEET_COMPUTED:
            if k in prior:
                after[k] = prior[k]
    if rec is None:
        return Change(address=d.address, kind=ResourceKind.FLEET, action=Action.CREATE, provider=d.provider,
                      provider_type=d.provider_type, reasons=["not in state"], after=after,
                      after_unknown=sorted(unknown),
                      dependencies=sorted(d.depends_on))
    attr_changes = diff_attributes(prior, after, unknown=unknown)
    reasons = []
    before_n, after_n = prior.get("replicas"), after.get("replicas")
    if before_n != after_n:
        reasons.append(f"replicas {before_n} -> {after_n}")
    elif attr_changes:
        reasons.append(_changed_names(attr_changes))
    return Change(address=d.address, kind=ResourceKind.FLEET, action=Action.UPDATE if attr_changes else Action.NOOP,
                  provider=d.provider, provider_type=d.provider_type, before=prior, after=after,
                  after_unknown=sorted(unknown), attributes=attr_changes, dependencies=sorted(d.depends_on),
                  reasons=reasons)


def _plan_replica(d: DesiredResource, attrs, unknown, ctx: _Ctx, providers: ProviderSet,
                  observations: dict[str, Observation], opts: PlanOptions) -> Change:
    provider = providers.get(d.provider)
    rec = ctx.state.get(d.address)
    obs = observations.get(d.address)
    base = dict(address=d.address, kind=d.kind, provider=d.provider, provider_type=d.provider_type,
                dependencies=sorted(d.depends_on), fleet=d.fleet)
    cbd = True if d.lifecycle is None or d.lifecycle.create_before_destroy is None else d.lifecycle.create_before_destroy
    attrs = dict(attrs, provider_type=d.provider_type)

    def fresh(reasons: list[str], unknown: set[str]) -> tuple[dict, set[str], bool]:
        """Attributes of a brand-new object (no ids or ports of the old one)."""
        pplan = provider.plan(d.kind, None, attrs)
        ctx.diagnostics.extend(_locate(pplan.diagnostics, d))
        after, unknown = _with_computed(pplan.attributes, unknown, provider)
        return after, unknown, pplan.create_before_destroy_ok

    unproven = rec is not None and rec.status == "creating" and obs is not None and obs.result is not None \
        and (not obs.result.exists or not proves_existence(obs.result, rec.attributes, provider.computed))
    if rec is None or unproven:
        if rec is None:
            reasons = ["not in state"]
        elif not obs.result.exists:
            reasons = ["an interrupted create left no server behind"]
        else:  # adopting it would keep a record without the ids and endpoint only a create returns
            reasons = [f"an interrupted create left nothing {d.provider or 'the provider'} can show exists (its read "
                       f"returned none of {', '.join(sorted(provider.computed)) or 'its computed attributes'})"]
        after, unknown, _ = fresh(reasons, unknown)
        return Change(**base, action=Action.CREATE, reasons=reasons, after=after, after_unknown=sorted(unknown),
                      create_before_destroy=cbd)

    prior = dict(rec.attributes)
    reasons: list[str] = []
    gone = False
    if obs is not None and obs.result is not None:
        if obs.result.exists:
            prior.update(obs.result.attributes)
        else:
            gone = True
    ignore = set(d.lifecycle.ignore_changes) if d.lifecycle else set()
    desired_attrs = {k: (prior.get(k) if k in ignore and k in prior else v) for k, v in attrs.items()}
    pplan = provider.plan(d.kind, prior, desired_attrs)
    ctx.diagnostics.extend(_locate(pplan.diagnostics, d))
    computed = set(provider.computed)
    forces = [k for k in pplan.requires_replace if k not in ignore]
    if gone:
        detail = f": {obs.result.detail}" if obs.result.detail else ""
        after, unknown, _ = fresh([], unknown)
        return Change(**base, action=Action.CREATE, before=rec.attributes, after=after, after_unknown=sorted(unknown),
                      attributes=diff_attributes(prior, after, unknown=unknown), create_before_destroy=cbd,
                      reasons=[f"the real server is gone (refresh found nothing{detail}); it will be created again"])
    # a server an interrupted apply started is ours (found by its instance id), even while it warms up
    adopt = rec.status == "creating" and obs is not None and obs.result is not None and obs.result.exists
    forced_by: list[str] = []
    if obs is not None and obs.result is not None and obs.result.exists and obs.result.healthy is False \
            and rec.status != "tainted":
        why = "running but not healthy" + (f" ({obs.result.detail})" if obs.result.detail else "")
        if adopt:  # a server an interrupted apply started may still be warming up
            ctx.diagnostics.append(Diagnostic(f"{d.address} is {why}", severity="warning",
                                              location=d.location, path=d.address))
        else:  # as Terraform taints what did not come up right: replaced, the new one first
            forced_by.append(f"{REASON_REPLACE_FORCED}it is tainted: {why}")
    if not adopt and (rec.status in ("tainted", "failed", "deleting") or rec.pending):
        what = {"tainted": "it is tainted", "failed": "a previous apply failed on it",
                "deleting": "a delete was interrupted"}.get(
            rec.status, f"an interrupted {(rec.pending or {}).get('action', 'apply')}")
        forced_by.append(REASON_REPLACE_FORCED + what)
    if d.address in opts.replace:
        forced_by.append(REASON_REPLACE_REQUESTED)

    if forces or forced_by:
        after, unknown, cbd_ok = fresh([], unknown)
        cbd_ok = cbd_ok and pplan.create_before_destroy_ok
        attr_changes = diff_attributes(prior, after, unknown=unknown, forces=set(forces))
        reasons = forced_by + [f"{a.path}: {_shown(a.path, a.before, ctx)} -> {_shown(a.path, a.after, ctx)} "
                               "forces replacement" for a in attr_changes if a.forces_replace]
        if cbd and not cbd_ok:
            cbd = False
            ctx.diagnostics.append(Diagnostic(
                f"{d.address} cannot be replaced create-before-destroy (fixed port); "
                "it will be stopped before its replacement starts",
                severity="warning", location=d.location, path=d.address))
        return Change(**base, action=Action.REPLACE, before=rec.attributes, after=after, after_unknown=sorted(unknown),
                      attributes=attr_changes, requires_replace=forces or ["(forced)"],
                      create_before_destroy=cbd, reasons=reasons)

    after = pplan.attributes
    attr_changes = diff_attributes(
        {k: v for k, v in prior.items() if k not in computed},
        {k: v for k, v in after.items() if k not in computed}, unknown=unknown)
    if attr_changes:
        return Change(**base, action=Action.UPDATE, before=rec.attributes, after=after, after_unknown=sorted(unknown),
                      attributes=attr_changes, reasons=[f"{a.path} changes in place" for a in attr_changes][:3],
                      rolls_out=pplan.redeploys)
    if adopt:
        return Change(**base, action=Action.REFRESH, before=rec.attributes, after=prior,
                      reasons=["adopts the server an interrupted apply started"])
    if obs is not None and obs.result is not None and obs.result.exists and _observed_differs(rec.attributes, prior):
        return Change(**base, action=Action.REFRESH, before=rec.attributes, after=prior,
                      reasons=["state updated from what refresh found"])
    return Change(**base, action=Action.NOOP, before=rec.attributes, after=prior)


def proves_existence(result, recorded: dict, computed) -> bool:
    """Whether a read found the real object of a half-created record: it returned a computed
    attribute (an id, a pid, an endpoint) that the engine's intent did not hold already.

    Echoing the recorded attributes back proves nothing, so such a record is not adopted."""
    return any(result.attributes.get(k) is not None and result.attributes.get(k) != recorded.get(k) for k in computed)


def _with_computed(attrs: dict, unknown: set[str], provider) -> tuple[dict, set[str]]:
    """Add the provider's computed attributes as known-after-apply to a new object's attributes."""
    after = dict(attrs)
    unknown = set(unknown)
    for k in provider.computed | ({"port"} if attrs.get("port") is None else set()):
        after.setdefault(k, None)
        if after[k] is None:
            unknown.add(k)
    return after, unknown


def _observed_differs(stored: dict, observed: dict) -> bool:
    return any(stored.get(k) != v for k, v in observed.items())


def _strip(attrs: dict, computed: set[str]) -> dict:
    return {k: (None if k in computed else v) for k, v in attrs.items()}


def _shown(path: str, v, ctx: _Ctx) -> str:
    """A value as a reason shows it: secrets masked (by field name, known value or sealed form)."""
    shown = redact(v, ctx.secrets, key=path.rsplit(".", 1)[-1])
    return REDACTED if shown == REDACTED else _short(shown)


def _short(v) -> str:
    s = repr(v) if not isinstance(v, str) else f'"{v}"'
    return s if len(s) <= 60 else s[:57] + "..."


def _locate(diags: list[Diagnostic], d: DesiredResource) -> list[Diagnostic]:
    for diag in diags:
        if diag.location is None:
            diag.location = d.location
        if diag.path is None:
            diag.path = d.address
    return diags


def _check_prevent_destroy(configured, current, ctx: _Ctx) -> None:
    """An error for each destroy or replacement of a resource whose config sets
    `lifecycle.prevent_destroy` (a removed replica: its fleet's)."""
    for c in ctx.changes.values():
        if c.action not in (Action.DELETE, Action.REPLACE) or c.deposed:
            continue
        d = configured.get(c.address) or configured.get(c.fleet or "")
        if d is None or not (d.lifecycle and d.lifecycle.prevent_destroy):
            continue
        what = "destroy" if c.action == Action.DELETE else "replace"
        why = "; ".join(c.reasons)
        ctx.diagnostics.append(Diagnostic(
            f"{c.address} has lifecycle.prevent_destroy set, but the plan would {what} it"
            + (f" ({why})" if why else "") + "; remove prevent_destroy from the config first",
            location=d.location, path=f"{d.fleet or d.address}.lifecycle.prevent_destroy", detail=why))


def _mark_risks(ctx: _Ctx, desired) -> None:
    by_fleet: dict[str, list[Change]] = {}
    for c in ctx.changes.values():
        if c.kind == ResourceKind.REPLICA and c.fleet:
            by_fleet.setdefault(c.fleet, []).append(c)
        if c.action == Action.DELETE:
            c.risks.append("destroys" + (" a serving replica" if c.kind == ResourceKind.REPLICA else ""))
        elif c.action == Action.REPLACE:
            c.risks.append("replaces" + ("" if c.create_before_destroy else " (stops the old one first)"))
    for fleet, reps in by_fleet.items():
        live_before = sum(1 for c in reps if c.before is not None and not c.deposed)
        dbd = sum(1 for c in reps if c.action == Action.REPLACE and not c.create_before_destroy)
        deleted = sum(1 for c in reps if c.action == Action.DELETE and not c.deposed)
        created = sum(1 for c in reps if c.action == Action.CREATE and c.before is None)
        low = live_before - deleted - dbd
        if live_before and low < live_before:
            fc = ctx.changes.get(fleet)
            msg = f"serving capacity of {fleet} drops from {live_before} to {max(low, 0)} replica(s)"
            if created:
                msg += f" before {created} new one(s) come up" if low < live_before - deleted else ""
            if fc is not None:
                fc.risks.append(msg)
            else:
                reps[0].risks.append(msg)


def _plan_rollouts(ctx: _Ctx, desired) -> None:
    """Say in the plan how each fleet's replacements will roll out, and check they can."""
    for fleet_addr, reps in ctx.by_fleet.items():
        replaced = [c for c in reps if c.action == Action.REPLACE and not c.deposed]
        fc = ctx.changes.get(fleet_addr)
        spec_data = ((fc.after or {}).get("rollout") if fc else None)
        if fc is not None and any((c.after or {}).get("placement") == "service" for c in reps):
            _plan_service_rollout(ctx, desired, fleet_addr, fc, reps, spec_data or {"strategy": "default"})
            continue
        if not replaced or not spec_data:
            continue
        from infraplan.models.config import RolloutBlock
        from infraplan.plan.rollout_checks import check_spec
        from infraplan.plan.weights import describe

        spec = RolloutBlock.model_validate(spec_data)
        has_router = any(d.kind == ResourceKind.ROUTER and fleet_addr in d.depends_on for d in desired.values())
        d = desired.get(fleet_addr)
        for msg in check_spec(fleet_addr, spec, has_router):
            ctx.diagnostics.append(Diagnostic(msg, location=d.location if d else None, path=f"{fleet_addr}.rollout"))
        fc.reasons.append("rollout: " + describe(spec, len([c for c in reps if not c.deposed and c.action != Action.DELETE])))
        if spec.strategy == "canary":
            _warn_uneven_split(ctx, desired, fleet_addr, d)
        for c in replaced:
            c.reasons.append(f"replaced by the fleet's {spec.strategy} rollout")
        if spec.strategy == "recreate":
            fc.risks.append(f"serving capacity of {fleet_addr} drops to zero during the recreate rollout")


def _warn_uneven_split(ctx: _Ctx, desired, fleet_addr: str, d) -> None:
    """A canary's shares are worker counts: only a router that balances evenly gives them."""
    from infraplan.plan.weights import EVEN_POLICIES

    for r in desired.values():
        if r.kind != ResourceKind.ROUTER or fleet_addr not in r.depends_on:
            continue
        policy = r.attributes.get("policy") or "cache_aware"
        if policy not in EVEN_POLICIES:
            ctx.diagnostics.append(Diagnostic(
                f"{fleet_addr}: the canary's shares are worker counts, but {r.address} runs smg's {policy} policy, "
                f"which does not split evenly (cache_aware sends repeated prompts to one worker); set `policy: "
                f"round_robin` on {r.address} for the shares the plan shows",
                severity="warning", location=r.location or (d.location if d else None), path=f"{r.address}.policy"))


def _plan_service_rollout(ctx: _Ctx, desired, fleet_addr: str, fc: Change, reps, spec_data: dict) -> None:
    """A SkyServe fleet: rolling and blue-green are SkyServe's own update modes; a canary runs the
    new version as a separate service behind the fleet's router (Flagger's primary/canary)."""
    strategy = spec_data.get("strategy")
    d = desired.get(fleet_addr)
    where = {"location": d.location if d else None, "path": f"{fleet_addr}.rollout.strategy"}
    if strategy == "recreate":
        ctx.diagnostics.append(Diagnostic(
            f"{fleet_addr}: rollout strategy recreate is not available with placement: service (SkyServe never "
            "stops a service to update it); use rolling, blue_green or canary", **where))
        return
    redeploy = [c for c in reps if c.action == Action.UPDATE and c.rolls_out and not c.deposed]
    if strategy != "canary":
        if redeploy:  # a labels change is recorded in state only: nothing rolls out
            mode = strategy if strategy != "default" else \
                ((reps[0].after or {}).get("service") or {}).get("update_mode") or "rolling"
            fc.reasons.append(f"rollout: SkyServe {mode} update of the service (sky.serve.update, mode {mode})")
            for msg in _skyserve_ignores(spec_data):
                ctx.diagnostics.append(Diagnostic(f"{fleet_addr}: {msg}", severity="warning",
                                                  location=where["location"], path=f"{fleet_addr}.rollout"))
        return
    from infraplan.models.config import RolloutBlock
    from infraplan.plan.weights import describe_service_canary

    routers = sorted(r.address for r in desired.values() if r.kind == ResourceKind.ROUTER and fleet_addr in r.depends_on)
    if not routers:
        # an error once a new version is to roll out; a warning before (e.g. when the fleet is created)
        ctx.diagnostics.append(Diagnostic(
            f"{fleet_addr}: a canary of a placement: service fleet runs the new version as a separate service "
            f"and moves traffic between the two through a router, and no router fronts {fleet_addr}; add a "
            "`router:` block listing it, or use rolling or blue_green (SkyServe's own update modes)",
            severity="error" if redeploy else "warning", **where))
        return
    if not redeploy:
        return
    scaled = [c.address for c in reps if c.action in (Action.CREATE, Action.DELETE, Action.REPLACE) and not c.deposed]
    if scaled:
        ctx.diagnostics.append(Diagnostic(
            f"{fleet_addr}: a canary of a placement: service fleet cannot also change its replicas "
            f"({', '.join(scaled)}); apply the replica change and the new version separately", **where))
        return
    spec = RolloutBlock.model_validate(spec_data)
    n = len([c for c in reps if not c.deposed])
    service = (redeploy[0].before or {}).get("service_name") or "the service"
    fc.reasons.append("rollout: " + describe_service_canary(spec, n, service, routers))
    for c in reps:
        if c.action == Action.UPDATE and not c.deposed:
            c.rolls_out = True  # the fleet's rollout step records every slot once it is promoted
            c.reasons.append(f"rolled out by the fleet's canary through {', '.join(routers)}")


def _skyserve_ignores(spec_data: dict) -> list[str]:
    """What a SkyServe rolling / blue_green update will not do of a `rollout:` block, said before it runs."""
    from infraplan.models.config import RolloutBlock

    spec, default = RolloutBlock.model_validate(spec_data), RolloutBlock()
    out = []
    if spec.analysis.gates or spec.golden_prompts:
        out.append(f"SkyServe's {spec.strategy} update swaps the replicas itself: the golden prompts and analysis "
                   "gates are not run, and nothing rolls back on a bad version; use strategy canary to have them judged")
    if spec.strategy == "rolling" and (spec.max_surge, spec.max_unavailable) != (default.max_surge,
                                                                               default.max_unavailable):
        out.append("max_surge and max_unavailable do not apply: SkyServe's rolling update sets its own pace")
    if spec.strategy == "blue_green" and spec.rollback_window:
        out.append(f"rollback_window {spec.rollback_window} does not apply: SkyServe's blue_green update removes "
                   "the old replicas once the new ones are ready")
    return out


def _expand_targets(targets, desired, current) -> set[str]:
    out = set()
    for t in targets:
        out.add(t)
        for a in list(desired) + list(current):
            if a.startswith(t + "[") or a.startswith(t + '["'):
                out.add(a)
    return out


def _targets_fleet(change: Change, targets) -> bool:
    return any(change.address.startswith(t + "[") or change.fleet == t for t in targets)


_ORDER = {Action.DELETE: 0, Action.REPLACE: 1, Action.UPDATE: 2, Action.CREATE: 3, Action.REFRESH: 4, Action.NOOP: 5}


def _ordered(changes: list[Change]) -> list[Change]:
    """Risky changes first (destroys, replacements), then the rest, each by address."""
    return sorted(changes, key=lambda c: (_ORDER[c.action], c.address, c.deposed))


def _plan_outputs(config, lookup, UNKNOWN, resolve_deferred) -> dict:
    out = {}
    for name, o in config.outputs.items():
        value = resolve_deferred(o.value, lookup)
        unknown = _contains_unknown(value, UNKNOWN)
        out[name] = {"value": None if unknown else value, "unknown": unknown, "sensitive": o.sensitive}
    return out

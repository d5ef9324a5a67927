"""The provider contract: what a provider implements (third parties included).

A provider turns one resource instance (a fleet replica, a router) into a real thing
and back. Every call names the instance's `ResourceKind` (``replica`` or ``router``),
so a provider dispatches on it, never on its attributes. The engine calls, in order:

    plan(kind, prior, desired)              -> ProviderPlan (pure; no side effects)
    estimate(kind, attrs)                   -> placement and price, or None (plan time)
    prepare_create(kind, address, attrs)    -> attrs  (allocate identity: port, token)
        ... the engine records the intent in state ...
    create(kind, address, attrs)            -> attrs  (with ids: pid, cluster name, endpoint)
    read(kind, address, attrs)              -> ReadResult (refresh; exists / attributes / healthy)
    update(kind, address, prior, desired)   -> attrs  (only for attributes not forcing replace)
    delete(kind, address, attrs)            -> None   (idempotent: already gone is success)

Optional capabilities are mixins the engine checks with ``isinstance``:
`ListsInstances` (orphan discovery: ``infraplan drift`` / ``cleanup``) and
`RunsServices` (a fleet served as one service, with a canary service beside it).
`capabilities_of` names them; a provider running as a plugin keeps them (the worker
reports them in its handshake, `infraplan.providers.plugin`).

Providers are found through the entry-point group ``infraplan.providers``
(`infraplan.providers.registry`); the built-in ones register there too. Providers
import only this SDK, `serving`, `models`, `errors`, `diagnostics` and `util`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from infraplan.diagnostics import Diagnostic, did_you_mean, short_repr
from infraplan.errors import ProviderError
from infraplan.models.kinds import ResourceKind

__all__ = ["ADDRESS_LABEL", "LINEAGE_LABEL", "Capability", "Instance", "ListsInstances", "Provider", "ProviderContext", "ProviderPlan", "ReadResult",
           "ResourceKind", "RunsServices", "capabilities_of", "label_value", "project_labels"]

#: Label (GCP label, AWS tag, Kubernetes label) naming the state that launched a machine.
LINEAGE_LABEL = "infraplan-lineage"
#: Label naming the address (``fleet.chat[0]``, made label-safe) a machine was launched for.
ADDRESS_LABEL = "infraplan-address"


def label_value(text: str) -> str:
    """`text` as a label value every cloud accepts: lowercase letters, digits, ``-`` and ``_``,
    starting and ending with a letter or digit (Kubernetes), at most 63 characters (GCP)."""
    import hashlib

    value = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    value = re.sub(r"-{2,}", "-", value)
    if len(value) > 63:  # keep distinct addresses distinct
        value = f"{value[:54].rstrip('-_')}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return value


def project_labels(lineage: str, address: str) -> dict[str, str]:
    """The labels a provider sets on what it launches for `address` (none before a state exists)."""
    if not lineage:
        return {}
    return {LINEAGE_LABEL: label_value(lineage), ADDRESS_LABEL: label_value(address)}


@dataclass
class ProviderContext:
    """What a provider may know about the run it serves."""

    project_dir: Path
    state_path: Path
    runtime_dir: Path  # per-project scratch space (logs, pid files)
    settings: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # the provider block's key
    lineage: str = ""  # the state's lineage ("" before a state exists): marks what the provider launches


@dataclass
class ProviderPlan:
    """The provider's view of one planned change."""

    attributes: dict[str, Any]
    requires_replace: list[str] = field(default_factory=list)  # attribute names forcing replacement
    diagnostics: list[Diagnostic] = field(default_factory=list)
    create_before_destroy_ok: bool = True  # False when old and new cannot run side by side
    # an in-place update that redeploys the servers behind the same endpoint (a SkyServe
    # update): a fleet's canary then runs the new version beside it (`create_canary`)
    redeploys: bool = False


@dataclass
class ReadResult:
    """What the real world says about one resource."""

    exists: bool
    attributes: dict[str, Any] = field(default_factory=dict)
    healthy: bool | None = None
    detail: str | None = None


class Provider:
    """Base class for providers. Subclass and register under ``infraplan.providers``."""

    name: ClassVar[str] = "base"
    #: attributes whose change the provider can apply in place
    updatable: ClassVar[frozenset[str]] = frozenset({"labels"})
    #: attributes written by the provider (ids, endpoints): never diffed against config
    computed: ClassVar[frozenset[str]] = frozenset()
    #: False when `read` answers from memory, so refresh need not spread reads over threads
    concurrent_reads: bool = True
    #: modules the provider imports at run time (its SDK); `isolation: auto` runs it as a plugin without them
    requires: ClassVar[tuple[str, ...]] = ()
    #: pip requirements of the provider's plugin virtualenv (`infraplan plugins install NAME`)
    plugin_requirements: ClassVar[tuple[str, ...]] = ()
    #: pydantic model of the provider block's settings: `infraplan validate` checks them without
    #: starting the provider (or its plugin); None accepts any settings
    settings_model: ClassVar[type | None] = None

    def __init__(self, context: ProviderContext):
        self.context = context

    @classmethod
    def warm_key(cls) -> str:
        """What a warm plugin worker of this provider depends on beyond its code and environment: files its
        SDK reads once and keeps (catalogs, its own config). A worker serves only while this is unchanged
        (another one starts otherwise). Computed here, before every command: cheap (stat, not read)."""
        return ""

    # -- plan time ---------------------------------------------------------
    def validate_settings(self) -> list[Diagnostic]:
        """Check the provider block's settings: one diagnostic per problem, at its config path
        (``provider.BLOCK.settings.KEY``); the planner locates them and stops on errors.
        By default, `check_settings` against `settings_model`."""
        return self.check_settings(self.context.name or self.name, self.context.settings or {})

    @classmethod
    def check_settings(cls, block: str, settings: dict[str, Any]) -> list[Diagnostic]:
        """`settings` of provider block `block` against `settings_model`, with no instance (so no
        SDK, plugin or network): one diagnostic per problem, at its config path."""
        if cls.settings_model is None:
            return []
        from pydantic import ValidationError

        try:
            cls.settings_model.model_validate(settings)
        except ValidationError as exc:
            return [_settings_diagnostic(cls.name, block, cls.settings_model, err) for err in exc.errors()]
        return []

    def _parse_settings(self, model: Any) -> Any:
        """The block's settings parsed by `model` (a pydantic model); ProviderError naming the first bad key."""
        from pydantic import ValidationError

        try:
            return model.model_validate(self.context.settings or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ProviderError(f"provider {self.context.name or self.name}: settings.{where}: {first['msg']}") \
                from exc

    def plan(self, kind: ResourceKind, prior: dict[str, Any] | None, desired: dict[str, Any]) -> ProviderPlan:
        """Planned attributes and the attributes that force a replacement."""
        attrs = dict(desired)
        replace: list[str] = []
        if prior is not None:
            for key in sorted(set(prior) | set(desired)):
                if key in self.computed:
                    if key in prior:
                        attrs.setdefault(key, prior[key])
                    continue
                if prior.get(key) != desired.get(key) and key not in self.updatable:
                    replace.append(key)
        return ProviderPlan(attributes=attrs, requires_replace=replace)

    def estimate(self, kind: ResourceKind, attributes: dict[str, Any]) -> dict[str, Any] | None:
        """One replica's placement and price for the plan's cost lines, or None if unknown.

        Keys (all optional but ``hourly``): ``cloud``, ``region``, ``instance_type``,
        ``accelerators``, ``hourly`` ($/hour as planned), ``hourly_on_demand``,
        ``hourly_spot``, ``use_spot``, ``failover`` (candidates in the order tried),
        ``gpu_memory_gib`` (per GPU, for the fit check), ``note``. Called once per
        fleet, not per replica; raise ProviderError when the resources are infeasible.
        """
        return None

    # -- apply time --------------------------------------------------------
    def prepare_create(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """Allocate identity (ports, tokens) before the intent is written to state."""
        return dict(attributes)

    def create(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """Make the real thing; its attributes with the provider's ids and endpoint."""
        raise NotImplementedError

    def read(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> ReadResult:
        """What really runs for a state record."""
        raise NotImplementedError

    def update(self, kind: ResourceKind, address: str, prior: dict[str, Any], desired: dict[str, Any]
               ) -> dict[str, Any]:
        """Apply an in-place change; the new attributes."""
        merged = dict(prior)
        merged.update({k: v for k, v in desired.items() if k not in self.computed})
        return merged

    def delete(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> None:
        """Remove the real thing (already gone is success)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release clients and pools."""


def _settings_diagnostic(provider: str, block: str, model: Any, err: dict) -> Diagnostic:
    """One pydantic settings error as a diagnostic; an unknown key gets a did-you-mean."""
    loc = [str(p) for p in err["loc"]]
    summary = f"{provider} provider setting: {err['msg']}"
    if err["type"] == "extra_forbidden" and loc:
        summary = f"{provider} provider: unknown setting {short_repr(loc[-1])}" \
                  f"{did_you_mean(loc[-1], _fields_at(model, loc[:-1]))}"
    return Diagnostic(summary=summary, path=".".join(["provider", block, "settings", *loc]),
                      extra={"error": err["type"]})


def _fields_at(model: Any, loc: list[str]) -> list[str]:
    """The field names of the (nested) pydantic model at `loc` under `model`, for did-you-mean."""
    from pydantic import BaseModel

    for step in loc:
        field_info = model.model_fields.get(step)
        ann = field_info.annotation if field_info is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


@dataclass
class Instance:
    """A real server or machine found by listing, whether or not the state knows it."""

    instance_id: str
    provider: str  # provider block name, or the cloud driver that listed it
    name: str = ""
    endpoint: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # evidence: pid, tags, machine type, ...


class Capability(StrEnum):
    """An optional part of the contract, as a provider (or its plugin worker) names it."""

    LISTS_INSTANCES = "lists_instances"
    RUNS_SERVICES = "runs_services"


class ListsInstances:
    """Provider capability: list (and stop) the instances this state's project runs.

    Used by `infraplan drift` to find orphans (instances whose id is in no state)
    and by `infraplan cleanup` to remove them. Mix into a Provider subclass.
    """

    capability: ClassVar[Capability] = Capability.LISTS_INSTANCES

    def list_instances(self) -> list[Instance]:
        """Every instance carrying this project's marks (env, tags), in state or not."""
        raise NotImplementedError

    def delete_instance(self, instance: Instance) -> None:
        """Stop/terminate one listed instance (idempotent: already gone is success)."""
        raise NotImplementedError


class RunsServices:
    """Provider capability: fleets served as one service (SkyServe), with a canary service beside it.

    Used by the canary rollout of such a fleet (`infraplan.rollout.service`). Both calls
    concern replicas (a service fleet's slots). Mix into a Provider subclass.
    """

    capability: ClassVar[Capability] = Capability.RUNS_SERVICES

    def service_workers(self, address: str, attributes: dict[str, Any]) -> list[str]:
        """URLs of the ready replicas of the service `attributes` belongs to (a router's workers)."""
        raise NotImplementedError

    def create_canary(self, address: str, attributes: dict[str, Any], replicas: int) -> dict[str, Any]:
        """Run `attributes` (a new version of a service fleet) as a separate service of `replicas`.

        Returns its attributes, with ``workers`` (its replicas' URLs); ``delete(REPLICA,
        address, returned)`` removes it. ProviderError when `attributes` is no service fleet.
        """
        raise NotImplementedError


#: each capability's mixin
CAPABILITY_MIXINS: dict[Capability, type] = {Capability.LISTS_INSTANCES: ListsInstances,
                                             Capability.RUNS_SERVICES: RunsServices}


def capabilities_of(provider: type | object) -> list[Capability]:
    """The capabilities a provider class (or instance) implements, in `Capability` order."""
    cls = provider if isinstance(provider, type) else type(provider)
    return [cap for cap, mixin in CAPABILITY_MIXINS.items() if issubclass(cls, mixin)]

"""Expand a loaded Config into the resource instances the planner compares with state.

    model.NAME            kind "model"    registry entry; no provider
    fleet.NAME            kind "fleet"    aggregate of its replicas (endpoint, endpoints)
    fleet.NAME[i]         kind "replica"  one server process / cluster, owned by a provider
    router.NAME           kind "router"   a router in front of fleets, owned by a provider; its
                                          `worker_sets` are the fleets' ``${fleet.X.endpoints}``

With for_each, the fleet address carries its key: ``fleet.NAME["us"]`` and its
replicas ``fleet.NAME["us"][0]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infraplan.models.kinds import ResourceKind
from infraplan.models.config import ROUTER_LAUNCH_BLOCKS

MODEL_ATTRS = ("source", "revision", "served_name", "parameters", "dtype", "owner", "compliance", "architecture")


@dataclass
class DesiredResource:
    """One resource instance as the config wants it."""

    address: str
    kind: ResourceKind
    provider: str | None  # provider block key (replicas and routers)
    provider_type: str | None
    attributes: dict[str, Any]
    depends_on: set[str] = field(default_factory=set)  # instance addresses
    lifecycle: Any = None
    location: Any = None
    fleet: str | None = None  # aggregate address, for replicas
    templated: bool = True  # attributes may hold ${...} (deferred references or escaped $${)


def has_template(value: Any) -> bool:
    """Whether any string inside `value` holds ``${`` (left for plan/apply time)."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    return False


def replica_address(fleet_address: str, index: int) -> str:
    return f"{fleet_address}[{index}]"


def model_attributes(block) -> dict[str, Any]:
    data = block.model_dump(mode="json")
    attrs = {k: data.get(k) for k in MODEL_ATTRS}
    attrs["served_name"] = block.default_served_name()
    return attrs


def expand(config) -> dict[str, DesiredResource]:
    """Desired resources keyed by address, in a stable order."""
    out: dict[str, DesiredResource] = {}
    block_instances: dict[str, list[str]] = {}
    for addr, rc in config.models.items():
        attrs = model_attributes(rc.block)
        out[addr] = DesiredResource(
            address=addr, kind=ResourceKind.MODEL, provider=None, provider_type=None,
            attributes=attrs, location=rc.location, templated=has_template(attrs),
        )
        block_instances.setdefault(f"model.{rc.name}", []).append(addr)
    for addr, rc in config.fleets.items():
        block_instances.setdefault(f"fleet.{rc.name}", []).append(addr)

    for addr, rc in config.fleets.items():
        fb = rc.block
        model_addr = fb.model
        model = config.models.get(model_addr)
        provider_key = fb.provider
        pblock = config.providers.get(provider_key)
        provider_type = (pblock.type if pblock and pblock.type else provider_key)
        deps = set()
        for d in rc.depends_on:
            deps.update(block_instances.get(d, [d]))
        deps.discard(addr)
        engine = fb.engine
        m_attrs = out[model_addr].attributes if model_addr in out else {}
        replica_template = {
            "fleet": addr,
            "engine": engine.type,
            "model": model_addr,
            "model_source": m_attrs.get("source"),
            "model_revision": m_attrs.get("revision"),
            "served_name": m_attrs.get("served_name"),
            "args": engine.args,
            # only when pinned, so unpinned fleets plan exactly as before
            **({"sglang_version": engine.sglang_version} if engine.sglang_version else {}),
            "sim": engine.sim.model_dump(mode="json"),
            "env": engine.env,
            "accelerators": fb.accelerators,
            "labels": fb.labels,
            "region": fb.region,
            "cloud": fb.cloud,
            **fb.provider_attributes(),
        }
        templated = has_template(replica_template)
        replica_addrs = []
        for i in range(fb.replicas):
            raddr = replica_address(addr, i)
            attrs = dict(replica_template, index=i, port=(fb.port + i) if fb.port else None)
            out[raddr] = DesiredResource(
                address=raddr, kind=ResourceKind.REPLICA, provider=provider_key, provider_type=provider_type,
                attributes=attrs, depends_on=set(deps) | ({model_addr} if model else set()),
                lifecycle=fb.lifecycle, location=rc.location, fleet=addr, templated=templated,
            )
            replica_addrs.append(raddr)
        out[addr] = DesiredResource(
            address=addr, kind=ResourceKind.FLEET, provider=provider_key, provider_type=provider_type,
            attributes={
                "provider": provider_key,
                "model": model_addr,
                "served_name": m_attrs.get("served_name"),
                "replicas": fb.replicas,
                "accelerators": fb.accelerators,
                "engine": engine.type,
                "region": fb.region,
                "cloud": fb.cloud,
                "labels": fb.labels,
                **({"rollout": fb.rollout.model_dump(mode="json")} if fb.rollout.strategy != "default" else {}),
            },
            depends_on=set(deps) | set(replica_addrs) | ({model_addr} if model else set()),
            lifecycle=fb.lifecycle, location=rc.location, templated=templated,
        )
    for addr, rc in config.routers.items():
        out[addr] = router_resource(config, addr, rc, block_instances)
    return out


def router_resource(config, addr: str, rc, block_instances: dict[str, list[str]]) -> DesiredResource:
    """The router instance: one worker set per fleet instance, resolved at plan/apply time."""
    rb = rc.block
    fleets = [a for f in rb.fleets for a in block_instances.get(f, [])]
    deps = {a for d in rc.depends_on for a in block_instances.get(d, [d])} - {addr}
    pblock = config.providers.get(rb.provider)
    attrs = {
        "kind": "router",
        "policy": rb.policy,
        "port": rb.port,
        "labels": rb.labels,
        "worker_sets": ["${" + f + ".endpoints}" for f in fleets],
    }
    keys = [_fleet_api_key(config, f) for f in fleets]
    if any(k is not None for k in keys):  # absent without keys, as in states written before the field
        attrs["worker_api_keys"] = keys
    for name in ROUTER_LAUNCH_BLOCKS:
        block = getattr(rb, name).model_dump(mode="json", exclude_defaults=True)
        if block:  # absent when smg's defaults are kept, as in states written before the field existed
            attrs[name] = block
    return DesiredResource(
        address=addr, kind=ResourceKind.ROUTER, provider=rb.provider,
        provider_type=(pblock.type if pblock and pblock.type else rb.provider),
        attributes=attrs, depends_on=deps, location=rc.location, templated=True,
    )


def _fleet_api_key(config, instance: str) -> Any:
    """The SGLang `api_key` (engine.args) of fleet instance `instance`, unresolved, or None."""
    rc = config.fleets.get(instance)
    return rc.block.engine.args.get("api_key") if rc is not None else None

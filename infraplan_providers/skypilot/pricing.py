"""Plan-time placement and prices from SkyPilot's own optimizer and catalogs.

The optimizer runs in-process over the clouds a fleet names (or the provider's
`plan_clouds`), whatever credentials this machine has: a plan shows what the fleet
would cost, `apply` then needs the credentials.

Its answers are kept for the life of the process (in a warm plugin worker: across
commands), keyed by what they depend on: the candidate resources as SkyPilot is
asked for them (`translate.candidate_kwargs`), the clouds it may choose from, whether
a SkyServe controller is priced, and the digest of the catalog and config files
(`catalogs.fingerprint`). A second plan of the same fleets skips the optimizer; a
catalog update is a miss.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import threading
from typing import Any, Callable
from unittest import mock

from infraplan.errors import ProviderError

from .catalogs import fingerprint
from .settings import SkyPilotSettings
from .translate import candidate_kwargs, make_task

#: estimate key -> estimate, for the life of the process (bounded: oldest first out)
_CACHE: dict[str, dict[str, Any]] = {}
_CACHE_SIZE = 1024
#: one optimizer run at a time: `_pricing_clouds` patches a module attribute, which concurrent runs would undo
#: in the wrong order (sessions of a warm worker run side by side)
_OPTIMIZER = threading.Lock()


def _clouds(names: list[str]) -> list:
    from sky.utils.registry import CLOUD_REGISTRY as registry
    out = []
    for n in names:
        cloud = registry.from_str(n)
        if cloud is None:
            raise ProviderError(f"unknown cloud {n!r}")
        out.append(cloud)
    return out


@contextlib.contextmanager
def _pricing_clouds(names: list[str]):
    """Let the optimizer consider `names` without credentials (pricing only)."""
    enabled = _clouds(names)
    with mock.patch("sky.check.get_cached_enabled_clouds_or_refresh", return_value=enabled):
        yield


def _hourly(resources) -> float | None:
    try:
        v = resources.get_cost(3600)
    except Exception:  # noqa: BLE001 - a catalog without this row: unpriced, not fatal
        return None
    return None if v is None or math.isnan(v) else round(float(v), 6)


def _where(r) -> dict[str, Any]:
    return {"cloud": str(r.cloud).lower() if r.cloud else None, "region": r.region, "zone": r.zone,
            "instance_type": r.instance_type, "use_spot": bool(r.use_spot)}


def cheapest_offering(candidate, cloud_names: list[str]) -> dict[str, Any] | None:
    """The cheapest launchable (instance, region) for one candidate `sky.Resources`."""
    best = None
    for cloud in ([candidate.cloud] if candidate.cloud else _clouds(cloud_names)):
        feasible = cloud.get_feasible_launchable_resources(candidate.copy(cloud=cloud), num_nodes=1)
        for lr in feasible.resources_list:
            for region in cloud.regions_with_offering(lr.instance_type, lr.accelerators, lr.use_spot,
                                                      candidate.region, candidate.zone):
                priced = lr.copy(region=region.name)
                hourly = _hourly(priced)
                if hourly is not None and (best is None or hourly < best[0]):
                    best = (hourly, priced)
    if best is None:
        return None
    return dict(_where(best[1]), hourly=best[0])


def gpu_memory(cloud: str, accelerators: dict | None) -> float | None:
    """Memory of one GPU from the catalog (GB, as SkyPilot lists it)."""
    import sky

    if not accelerators:
        return None
    name = next(iter(accelerators))
    found = sky.catalog.list_accelerators(gpus_only=True, name_filter=name, clouds=[cloud], case_sensitive=False)
    for info in found.get(name, []):
        if info.device_memory and not math.isnan(info.device_memory):
            memory = float(info.device_memory)
            # RunPod's catalog has GB in a field named SizeInMiB, which SkyPilot divides by
            # 1024 (an H100 shows as 0.078): no GPU has less than 1 GB, so undo that division.
            return memory * 1024 if memory < 1.0 else memory
    return None


def remembered(what: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`compute()`, or its answer from the process's cache when `what` it depends on, and the catalog
    and config files, are as they were."""
    key = json.dumps(dict(what, files=fingerprint()), sort_keys=True, default=str)
    with _OPTIMIZER:
        if key not in _CACHE:
            _CACHE[key] = compute()
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
        return copy.deepcopy(_CACHE[key])


def cache_clear() -> None:
    with _OPTIMIZER:
        _CACHE.clear()


def estimate(attrs: dict[str, Any], settings: SkyPilotSettings) -> dict[str, Any]:
    """`optimize`, remembered: keyed by the candidate resources as SkyPilot is asked for them."""
    what = {"replica": candidate_kwargs(attrs, settings), "plan_clouds": list(settings.plan_clouds),
            "placement": attrs.get("placement") or settings.placement, "accelerators": attrs.get("accelerators")}
    return remembered(what, lambda: optimize(attrs, settings))


def optimize(attrs: dict[str, Any], settings: SkyPilotSettings) -> dict[str, Any]:
    """Run SkyPilot's optimizer for one replica and price the choice and the fail-over list."""
    import sky
    from sky import sky_logging

    task = make_task("infraplan-plan", attrs, settings)
    candidates = list(task.resources)
    names = sorted({str(c.cloud).lower() for c in candidates if c.cloud}) or list(settings.plan_clouds)
    dag = sky.Dag()
    dag.add(task)
    try:
        with _pricing_clouds(names), sky_logging.silent():
            sky.Optimizer.optimize(dag, minimize=sky.OptimizeTarget.COST, quiet=True)
            failover = [c for c in (cheapest_offering(r, names) for r in candidates) if c]
    except (sky.exceptions.ResourcesUnavailableError, sky.exceptions.ResourcesMismatchError, ValueError) as exc:
        raise ProviderError(
            f"no offering in SkyPilot's catalog for {', '.join(map(str, candidates))}: {exc}") from exc
    best = task.best_resources
    controller = None
    if (attrs.get("placement") or settings.placement) == "service":
        with _pricing_clouds(names), sky_logging.silent():
            controller = controller_offering(candidates, names)
    on_demand = _hourly(best.copy(use_spot=False))
    spot = _hourly(best.copy(use_spot=True))
    hourly = spot if best.use_spot else on_demand
    cloud = str(best.cloud).lower()
    return dict(_where(best), accelerators=attrs.get("accelerators"), hourly=hourly,
                hourly_on_demand=on_demand, hourly_spot=spot, failover=failover,
                gpu_memory_gib=gpu_memory(cloud, best.accelerators),
                placement=attrs.get("placement") or settings.placement,
                **({"controller": controller} if controller else {}))


def controller_offering(candidates: list, cloud_names: list[str]) -> dict[str, Any] | None:
    """The SkyServe controller VM SkyPilot would start for these replicas, priced.

    SkyPilot's own `get_controller_resources` (defaults `cpus: 4+, memory: 8+`, or
    `serve.controller.resources` from ~/.sky/config.yaml) on the clouds the replicas
    use; the cheapest offering. One controller serves every service of a SkyPilot user.
    """
    from sky.utils import controller_utils

    best = None
    for res in controller_utils.get_controller_resources(controller_utils.Controllers.SKY_SERVE_CONTROLLER,
                                                         candidates):
        offer = cheapest_offering(res, cloud_names)
        if offer is not None and (best is None or offer["hourly"] < best["hourly"]):
            best = offer
    if best is None:
        return None
    return dict(best, note="SkyServe controller: one per SkyPilot user, shared by all its services")

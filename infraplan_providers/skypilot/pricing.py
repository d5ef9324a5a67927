"""Plan-time placement and prices from SkyPilot's own optimizer and catalogs.

The optimizer runs in-process over the clouds a fleet names (or the provider's
`plan_clouds`), whatever credentials this machine has: a plan shows what the fleet
would cost, `apply` then needs the credentials.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any
from unittest import mock

from infraplan.errors import ProviderError

from .settings import SkyPilotSettings
from .translate import make_task


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


def estimate(attrs: dict[str, Any], settings: SkyPilotSettings) -> dict[str, Any]:
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

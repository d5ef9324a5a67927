"""`placement: service`: a fleet as one SkyServe service.

Replica addresses map onto the service as *slots*: ``fleet.NAME[i]`` is slot i of
the service ``<prefix>-NAME``. Replica 0 owns the service's lifecycle (its create
runs ``sky.serve.up`` when the service does not exist yet, its update runs
``sky.serve.update`` in the fleet's update mode, its delete runs ``sky.serve.down``);
every slot keeps the service's replica count in step: creating slot i makes sure the
service has at least i+1 replicas, deleting slot i>0 lowers it to i. A fleet's
addresses are always 0..N-1, so the count always equals the fleet's `replicas`
(unless `service.min_replicas` fixes it). All members record the service's endpoint.
"""

from __future__ import annotations

import re
from typing import Any

from infraplan.errors import ProviderError
from infraplan.models.config import ServiceSettings

from .settings import SkyPilotSettings
from .translate import spot_fallback_by_policy

# attributes a service update cannot change: they change which service a slot belongs to
SERVICE_REPLACES = frozenset({"placement", "fleet", "index", "provider_type"})
# attributes that reach SkyPilot (task or service spec); others (labels) stay in state
SERVICE_INPUTS = ("model_source", "model_revision", "served_name", "args", "sglang_version", "env", "accelerators",
                  "cloud", "region", "instance_type", "use_spot", "spot_fallback", "failover", "disk_size", "service")


def is_service(attrs: dict[str, Any], settings: SkyPilotSettings) -> bool:
    return (attrs.get("placement") or settings.placement) == "service"


def service_name(attrs: dict[str, Any], settings: SkyPilotSettings) -> str:
    """SkyServe-valid and stable: prefix and fleet (``fleet.chat["us"]`` -> ``infraplan-chat-us``)."""
    fleet = str(attrs.get("fleet") or "fleet").removeprefix("fleet.")
    name = re.sub(r"[^a-z0-9-]+", "-", f"{settings.name_prefix}-{fleet}".lower()).strip("-")
    return name[:50].rstrip("-")


def canary_name(attrs: dict[str, Any], settings: SkyPilotSettings) -> str:
    """The service a canary of the fleet runs as: ``<service>-canary``."""
    return f"{service_name(attrs, settings)[:43].rstrip('-')}-canary"


def name_of(attrs: dict[str, Any], settings: SkyPilotSettings) -> str:
    """The service a slot's record stands for: a canary's own, else the recorded or derived name."""
    if attrs.get("canary"):
        return canary_name(attrs, settings)
    return attrs.get("service_name") or service_name(attrs, settings)


def canary_attributes(attrs: dict[str, Any], replicas: int) -> dict[str, Any]:
    """A canary's attributes: a fixed count of `replicas` (no autoscaling) and SkyServe's defaults otherwise."""
    service = {k: v for k, v in (attrs.get("service") or {}).items()
               if k not in ("min_replicas", "max_replicas", "target_qps_per_replica", "update_mode")}
    return {**attrs, "service": service, "canary": True, "index": 0, "canary_replicas": replicas}


def service_settings(attrs: dict[str, Any]) -> ServiceSettings:
    return ServiceSettings.model_validate(attrs.get("service") or {})


def service_section(attrs: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The task YAML's ``service:`` section; `replicas` is the slot count."""
    s = service_settings(attrs)
    section: dict[str, Any] = {
        "readiness_probe": {"path": s.readiness_path, "initial_delay_seconds": s.initial_delay_seconds,
                            "timeout_seconds": s.timeout_seconds},
    }
    floor = s.min_replicas if s.min_replicas is not None else replicas
    fallback = spot_fallback_by_policy(attrs)
    if s.max_replicas is not None or s.target_qps_per_replica is not None or fallback:
        policy: dict[str, Any] = {"min_replicas": floor, "max_replicas": s.max_replicas or floor}
        if s.target_qps_per_replica is not None:
            policy["target_qps_per_replica"] = s.target_qps_per_replica
        if fallback:
            policy["dynamic_ondemand_fallback"] = True
        section["replica_policy"] = policy
    else:
        section["replicas"] = floor
    if s.load_balancing_policy:
        section["load_balancing_policy"] = s.load_balancing_policy
    return section


def make_service_spec(attrs: dict[str, Any], replicas: int):
    """A real `sky.serve.SkyServiceSpec`, validated by SkyPilot's schema."""
    from sky.serve import SkyServiceSpec

    try:
        return SkyServiceSpec.from_yaml_config(service_section(attrs, replicas))
    except Exception as exc:  # noqa: BLE001 - SkyPilot raises ValueError or a schema error
        raise ProviderError(f"invalid SkyServe service settings: {exc}") from exc


def make_service_task(name: str, attrs: dict[str, Any], settings: SkyPilotSettings, replicas: int, *,
                      with_secrets: bool = False, labels: dict[str, str] | None = None):
    """The fleet's `sky.Task` with its service spec; its replicas carry `labels`."""
    from .translate import make_task

    from sky.serve import serve_utils

    task = make_task(name, attrs, settings, with_secrets=with_secrets, labels=labels)
    task.set_service(make_service_spec(attrs, replicas))
    try:  # what `sky serve up` checks first (e.g. all resources spot or none)
        serve_utils.validate_service_task(task, pool=False)
    except (ValueError, RuntimeError) as exc:
        raise ProviderError(f"SkyServe refuses this service: {exc}") from exc
    return task


_POLICY_COUNT = re.compile(r"(?:Fixed|from) (\d+) ")


def policy_replicas(policy: str | None) -> int | None:
    """The replica floor in SkyServe's status `policy` text ("Fixed 2 replicas", "Autoscaling from 1 to 3 ...")."""
    m = _POLICY_COUNT.search(policy or "")
    return int(m.group(1)) if m else None


def inputs_changed(prior: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    """Names of the attributes that SkyServe must be told about (the update mode is how, not what)."""
    def value(attrs: dict[str, Any], key: str) -> Any:
        if key == "service":
            return {k: v for k, v in (attrs.get("service") or {}).items() if k != "update_mode"}
        return attrs.get(key)
    return [k for k in SERVICE_INPUTS if value(prior, k) != value(desired, k)]

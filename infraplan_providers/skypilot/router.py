"""Routers on SkyPilot: the SGLang Model Gateway (`smg`) on a CPU VM near the fleets.

A `router:` block whose provider is a skypilot block is one SkyPilot cluster
(``<prefix>-router-NAME``: `router_cpus` vCPUs at `router_infra`, the router port
opened) whose setup installs ``smg==smg_version`` and whose run command is
``smg launch --host 0.0.0.0 --port PORT --policy POLICY`` with the retry flags of the
local router (`infraplan.serving.smg.launch_args`: retries, circuit breaker, timeouts, rate limit, health check). The workers are the
fleets' endpoints, registered from this machine through smg's ``/workers`` API at the
endpoint SkyPilot reports for the port, exactly as for the local router, and rollouts
drive it the same way (`infraplan.rollout.traffic.RouterSwitch`).

The port is public, so two keys guard it, each from an environment variable whose
value reaches the VM as a SkyPilot secret while the record keeps only the variable's
*name*: `router_api_key_env` for inference (smg's ``--api-key``; clients send it as a
bearer token) and `router_admin_key_env` for the control plane
(``--control-plane-api-keys``). The plan warns when either door is open. Policy, retries and port are launch flags: a
change replaces the router (the new VM first, then the old one down).
"""

from __future__ import annotations

import os
import re
import shlex
import time
from typing import Any

from infraplan.diagnostics import Diagnostic
from infraplan.errors import ProviderError
from infraplan.providers.contract import ProviderPlan, ReadResult

from .settings import SkyPilotSettings

#: Attributes the provider writes for a router.
ROUTER_COMPUTED = frozenset({"cluster_name", "endpoint", "status", "workers", "cloud_chosen", "region_chosen",
                             "instance_type_chosen", "admin_key_env", "api_key_env"})
ROUTER_REPLACES = ("policy", "port", "retries", "circuit_breaker", "timeouts", "rate_limit", "health_check")


def cluster_name(address: str, settings: SkyPilotSettings) -> str:
    """``router.gateway`` -> ``infraplan-router-gateway`` (SkyPilot-valid, stable)."""
    name = address.removeprefix("router.")
    return re.sub(r"[^a-z0-9-]+", "-", f"{settings.name_prefix}-router-{name}".lower()).strip("-")[:50]


def port_of(attributes: dict[str, Any], settings: SkyPilotSettings) -> int:
    return int(attributes.get("port") or settings.router_port)


def plan(prior: dict[str, Any] | None, desired: dict[str, Any], settings: SkyPilotSettings) -> ProviderPlan:
    """Launch flags replace; worker sets and labels change in place (the /workers API).
    A router whose public port would serve inference or take workers with no key is a warning."""
    attrs = {k: v for k, v in desired.items() if k not in ROUTER_COMPUTED}
    replace: list[str] = []
    if prior is not None:
        replace = [k for k in ROUTER_REPLACES if (prior.get(k) or None) != (desired.get(k) or None)]
        # a key is a launch flag: setting or clearing its variable relaunches smg with or without it
        replace += [k for k, now in (("admin_key_env", admin_key(settings)), ("api_key_env", api_key(settings)))
                    if bool(now) != bool(prior.get(k))]
        if not replace:
            attrs.update({k: prior[k] for k in ROUTER_COMPUTED if k in prior})
    return ProviderPlan(attributes=attrs, requires_replace=replace, diagnostics=open_port_warnings(desired, settings))


def api_key(settings: SkyPilotSettings) -> str | None:
    return os.environ.get(settings.router_api_key_env) or None


def open_port_warnings(attributes: dict[str, Any], settings: SkyPilotSettings) -> list[Diagnostic]:
    """What the router's public port would let anyone do, said in the plan."""
    port = port_of(attributes, settings)
    out = []
    if not api_key(settings):
        out.append(Diagnostic(
            f"the router's public port {port} will serve the models to anyone who reaches it: set "
            f"${settings.router_api_key_env} to require a key (smg --api-key; clients send it as a bearer token)",
            severity="warning"))
    if not admin_key(settings) and not api_key(settings):
        out.append(Diagnostic(
            f"the router's control plane (/workers) on port {port} is open: anyone who reaches it can add "
            f"workers; set ${settings.router_admin_key_env} (or ${settings.router_api_key_env})",
            severity="warning"))
    return out


def admin_key(settings: SkyPilotSettings) -> str | None:
    return os.environ.get(settings.router_admin_key_env) or None


def run_command(attributes: dict[str, Any], settings: SkyPilotSettings) -> str:
    """``smg launch`` on all interfaces, with the router's policy and retry flags (and the control-plane key)."""
    from infraplan.serving.smg import launch_args

    argv = ["smg", "launch", "--host", "0.0.0.0", "--port", str(port_of(attributes, settings)),
            "--policy", attributes.get("policy") or "cache_aware", *launch_args(attributes)]
    cmd = shlex.join(argv)
    if api_key(settings):
        # a SkyPilot secret too: the task holds the variable's name, the VM its value
        cmd += f' --api-key "${{{settings.router_api_key_env}}}"'
    if admin_key(settings):
        # the key is a SkyPilot secret: expanded on the VM, never written into the task
        cmd += f' --control-plane-api-keys "infraplan:infraplan:admin:${{{settings.router_admin_key_env}}}"'
    return cmd


def resources_kwargs(attributes: dict[str, Any], settings: SkyPilotSettings) -> dict[str, Any]:
    kw: dict[str, Any] = {"cpus": settings.router_cpus, "ports": port_of(attributes, settings)}
    if settings.router_infra:
        kw["infra"] = settings.router_infra
    return kw


def make_task(address: str, attributes: dict[str, Any], settings: SkyPilotSettings, *, with_secrets: bool = False,
              labels: dict[str, str] | None = None):
    """The router's real `sky.Task`: a CPU VM, carrying `labels`, that installs smg and runs it."""
    import sky

    from .translate import check_labels

    try:
        resources = sky.Resources(**resources_kwargs(attributes, settings), labels=labels or None)
    except (ValueError, sky.exceptions.ResourcesUnavailableError) as exc:
        raise ProviderError(f"invalid SkyPilot resources for {address}: {exc}") from exc
    check_labels(resources)
    secrets = {}
    if with_secrets:
        secrets = {env: value for env, value in ((settings.router_admin_key_env, admin_key(settings)),
                                                 (settings.router_api_key_env, api_key(settings))) if value}
    task = sky.Task(name=cluster_name(address, settings), setup=f"pip install 'smg=={settings.smg_version}'",
                    run=run_command(attributes, settings), secrets=secrets or None)
    task.set_resources(resources)
    return task


def estimate(attributes: dict[str, Any], settings: SkyPilotSettings) -> dict[str, Any] | None:
    """The router VM's cheapest offering in SkyPilot's catalogs (remembered, as fleets' estimates are)."""
    from .pricing import remembered

    kwargs = {k: v for k, v in resources_kwargs(attributes, settings).items() if k != "ports"}
    return remembered({"router": kwargs, "plan_clouds": list(settings.plan_clouds), "cpus": settings.router_cpus},
                      lambda: _offer(kwargs, settings))


def _offer(kwargs: dict[str, Any], settings: SkyPilotSettings) -> dict[str, Any]:
    import sky
    from sky import sky_logging

    from .pricing import _pricing_clouds, cheapest_offering

    res = sky.Resources(**kwargs)
    names = [str(res.cloud).lower()] if res.cloud else list(settings.plan_clouds)
    with _pricing_clouds(names), sky_logging.silent():
        offer = cheapest_offering(res, names)
    if offer is None:
        raise ProviderError(f"no offering in SkyPilot's catalog for a router VM ({res})")
    return dict(offer, note=f"router VM (smg, {settings.router_cpus} vCPUs)")


def _client(attributes: dict[str, Any], timeout: float = 10.0):
    from infraplan.serving.smg import SmgClient

    return SmgClient.for_router(attributes, timeout=timeout)


def _wait_healthy(attributes: dict[str, Any], settings: SkyPilotSettings, address: str) -> None:
    deadline = time.monotonic() + settings.router_ready_timeout_s
    with _client(attributes, timeout=5.0) as c:
        while not c.health():
            if time.monotonic() > deadline:
                raise ProviderError(f"{address}: smg at {attributes['endpoint']} not healthy after "
                                    f"{settings.router_ready_timeout_s:g}s; see `sky logs "
                                    f"{attributes.get('cluster_name')}`")
            time.sleep(min(2.0, max(0.1, settings.poll_s)))


def create(client, settings: SkyPilotSettings, address: str, attributes: dict[str, Any],
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Launch the VM (carrying `labels`), wait for smg's /health, register the workers."""
    from infraplan.serving.smg import flatten

    want = flatten(attributes.get("worker_sets"))
    name = cluster_name(address, settings)
    info = client.launch(make_task(address, attributes, settings, with_secrets=True, labels=labels), name,
                         port=port_of(attributes, settings))
    if not info.get("endpoint"):
        raise ProviderError(f"{address}: SkyPilot reports no endpoint for port {port_of(attributes, settings)} "
                            f"of {name}")
    attrs = dict(attributes, cluster_name=name, **{k: v for k, v in info.items() if k in ROUTER_COMPUTED})
    if admin_key(settings):
        attrs["admin_key_env"] = settings.router_admin_key_env
    if api_key(settings):
        attrs["api_key_env"] = settings.router_api_key_env
    _wait_healthy(attrs, settings, address)
    with _client(attrs) as c:
        attrs["workers"] = c.sync(want)
    return attrs


def update(address: str, prior: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """Swap the registered workers for the desired ones (new ones first)."""
    from infraplan.serving.smg import flatten

    attrs = dict(prior)
    attrs.update({k: v for k, v in desired.items() if k not in ROUTER_COMPUTED})
    with _client(attrs) as c:
        attrs["workers"] = c.sync(flatten(attrs.get("worker_sets")))
    return attrs


def read(client, settings: SkyPilotSettings, address: str, attributes: dict[str, Any]) -> ReadResult:
    """The cluster, smg's /health, and the workers it holds (as the local router reports them)."""
    from infraplan.providers.smg_router import observe

    name = attributes.get("cluster_name") or cluster_name(address, settings)
    rec = client.status(name)
    if rec is None:
        return ReadResult(exists=False, detail=f"no SkyPilot cluster {name}")
    attrs = dict(attributes, **{k: v for k, v in rec.items() if k in ROUTER_COMPUTED})
    if rec["status"] != "running" or not attrs.get("endpoint"):
        return ReadResult(exists=True, attributes=attrs, healthy=False, detail=rec.get("detail") or rec["status"])
    with _client(attrs, timeout=3.0) as c:
        return observe(c, attrs)

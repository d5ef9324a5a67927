"""Routers of the local provider: the real SGLang Model Gateway (`smg`) on 127.0.0.1.

What this relies on, read from smg 1.13.0 (PyPI `smg`, a Rust core behind a small
Python launcher; CPU only, no torch) and checked against the sim engine:

* start: ``python -m smg launch --host H --port P --policy POLICY`` (the console
  script `smg` is the same ``smg.cli:main``). Defaults to override: ``--host 0.0.0.0``,
  ``--port 30000`` and a Prometheus listener on ``0.0.0.0:29000``
  (``--prometheus-host``/``--prometheus-port``), so all three are always given.
  Policies (``--policy``, default ``cache_aware``): random, round_robin, passthrough,
  cache_aware, power_of_two, least_load, manual, consistent_hashing, prefix_hash.
  Worker health checks: ``--health-check-interval-secs`` (60), ``--health-check-endpoint``
  (/health), ``--health-failure-threshold`` (3). Retries: on by default, a failed request
  (5xx) is sent again to another worker, up to ``--retry-max-retries`` (5) attempts in all,
  with backoff ``--retry-initial-backoff-ms`` (50), ``--retry-max-backoff-ms`` (30000),
  ``--retry-backoff-multiplier`` (1.5), ``--retry-jitter-factor`` (0.2); ``--disable-retries``
  passes a worker's error to the client (the failed response still names that worker).
* the launcher renames the process (setproctitle ``smg::router``), which overwrites its
  command line and, unless ``SPT_NOENV=1`` is set, its ``/proc/PID/environ`` too; so it
  is started with ``SPT_NOENV=1`` and found again by ``INFRAPLAN_INSTANCE_ID`` in its
  environment.
* routes: ``GET /health`` (200 "OK", also with no workers), ``/liveness``, ``/readiness``;
  ``GET /workers`` -> ``{"workers": [{"id", "url", "status": "ready"|"draining"|...,
  "is_healthy", "model_id", ...}], "total", "stats"}``; ``POST /workers {"url": ...}``
  -> 202 ``{"worker_id", ...}`` (registration runs in the background: the worker is
  listed once smg reached its /health and read its model info); ``DELETE
  /workers/{worker_id}`` -> 202 (the worker turns ``draining``, takes no new requests,
  and is dropped after a 5 s settle time); proxied: ``/v1/chat/completions``,
  ``/v1/completions``, ``/generate``, ``/v1/models``, ``/get_server_info``; metrics on the
  Prometheus listener's ``/metrics``. Proxied responses name the worker that served
  them in the ``x-smg-routed-worker-id`` header (its URL).
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path
from typing import Any

import psutil

from infraplan.diagnostics import Diagnostic
from infraplan.errors import ProviderError
from infraplan.providers.contract import ProviderPlan, ReadResult
from infraplan.providers.smg_router import observe
from infraplan.serving.smg import LAUNCH_ATTRS, SmgClient, flatten, launch_args  # noqa: F401  (flatten: re-exported)
from infraplan_providers.local import process

SMG_MISSING = "the router needs smg: pip install 'infraplan[router]'"
#: Attributes a router's provider writes (never compared with config).
ROUTER_COMPUTED = frozenset({"instance_id", "host", "endpoint", "pid", "started_at", "log_path",
                             "metrics_port", "workers"})
#: smg launch flags of a router's `retries` tuning (config key -> flag).
#: How long a worker may take to be registered, and to be drained and dropped.


def smg_installed() -> bool:
    try:
        return importlib.util.find_spec("smg") is not None
    except (ImportError, ValueError):
        return False


# -- plan ------------------------------------------------------------------------


def plan(prior: dict[str, Any] | None, desired: dict[str, Any]) -> ProviderPlan:
    """Policy, retries and a fixed port need a new process; worker sets and labels change in place."""
    attrs = {k: v for k, v in desired.items() if k not in ROUTER_COMPUTED}
    replace: list[str] = []
    if prior is not None:
        if prior.get("policy") != desired.get("policy"):
            replace.append("policy")
        replace += [k for k in LAUNCH_ATTRS if (prior.get(k) or {}) != (desired.get(k) or {})]  # absent: defaults
        if desired.get("port") is not None and desired.get("port") != prior.get("port"):
            replace.append("port")
        if not replace:  # same process: keep its identity, chosen port and observed workers
            attrs.update({k: prior[k] for k in ROUTER_COMPUTED if k in prior})
            if desired.get("port") is None:
                attrs["port"] = prior.get("port")
    diags = [] if smg_installed() else [Diagnostic(summary=SMG_MISSING)]
    return ProviderPlan(attributes=attrs, requires_replace=replace, diagnostics=diags,
                        create_before_destroy_ok=desired.get("port") is None)


# -- lifecycle -------------------------------------------------------------------


def argv(python: str, host: str, port: int, metrics_port: int, policy: str,
         attributes: dict[str, Any] | None = None) -> list[str]:
    """`smg launch` on this machine, with the router's retry and fault-isolation flags."""
    return [python, "-m", "smg", "launch", "--host", host, "--port", str(port),
            "--prometheus-host", host, "--prometheus-port", str(metrics_port), "--policy", policy,
            *launch_args(attributes or {})]


def prepare_create(settings: Any, runtime_dir: Path, address: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """Identity of a new router: instance id, its port and its metrics port, log path."""
    attrs = {k: v for k, v in attributes.items() if k not in ROUTER_COMPUTED}
    instance_id = uuid.uuid4().hex
    lo, hi = settings.ports
    try:
        if attrs.get("port") is not None:
            port = int(attrs["port"])
            process.ports.claim(port, instance_id)
        else:
            port = process.ports.allocate(settings.host, lo, hi, instance_id)
        metrics_port = process.ports.allocate(settings.host, lo, hi, instance_id)
    except RuntimeError as exc:
        raise ProviderError(f"{address}: {exc}") from exc
    name = address.replace(".", "_")
    attrs.update(instance_id=instance_id, port=port, metrics_port=metrics_port, host=settings.host,
                 endpoint=f"http://{settings.host}:{port}",
                 log_path=str(Path(runtime_dir) / "logs" / f"{name}-{instance_id[:8]}.log"))
    return attrs


def _release(attrs: dict[str, Any]) -> None:
    for key in ("port", "metrics_port"):
        if attrs.get(key) is not None and attrs.get("instance_id"):
            process.ports.release(int(attrs[key]), attrs["instance_id"])


def create(settings: Any, runtime_dir: Path, env_extra: dict[str, str], address: str,
           attributes: dict[str, Any]) -> dict[str, Any]:
    """Start smg detached, wait for /health, register the workers."""
    if not smg_installed():
        raise ProviderError(SMG_MISSING)
    attrs = dict(attributes)
    if not attrs.get("instance_id") or attrs.get("port") is None or attrs.get("metrics_port") is None:
        attrs = prepare_create(settings, runtime_dir, address, attrs)
    want = flatten(attrs.get("worker_sets"))
    port, endpoint, log_path = int(attrs["port"]), attrs["endpoint"], Path(attrs["log_path"])
    for p in (port, int(attrs["metrics_port"])):
        if not process.port_is_free(settings.host, p):
            _release(attrs)
            raise ProviderError(f"{address}: port {p} on {settings.host} is already in use")
    # SPT_NOENV: setproctitle must leave the environment (and so the instance id) readable
    env = {**os.environ, **env_extra, process.INSTANCE_ENV: attrs["instance_id"], "SPT_NOENV": "1"}
    cmd = argv(settings.python, settings.host, port, int(attrs["metrics_port"]), attrs.get("policy") or "cache_aware",
               attrs)
    try:
        popen = process.spawn_detached(cmd, log_path, env=env, cwd=Path(runtime_dir))
    except OSError as exc:
        _release(attrs)
        raise ProviderError(f"{address}: cannot start smg: {exc}") from exc
    try:
        outcome = process.wait_for_health(endpoint, popen, settings.ready_timeout_s)
        if not outcome.ready:
            why = (f"smg exited with code {outcome.exit_code}" if outcome.exit_code is not None
                   else f"smg not healthy after {settings.ready_timeout_s:g}s")
            raise ProviderError(f"{address}: {why}; log {log_path}, last lines:\n{process.tail(log_path)}")
        with SmgClient.for_router(attrs) as client:
            workers = client.sync(want)
        started_at = psutil.Process(popen.pid).create_time()
    except BaseException:
        process.stop_pid(popen.pid, settings.stop_timeout_s)
        _release(attrs)
        raise
    attrs.update(pid=popen.pid, started_at=started_at, workers=workers)
    return attrs


def find(attrs: dict[str, Any]) -> psutil.Process | None:
    return process.find_server(attrs.get("pid"), attrs.get("started_at"), attrs.get("instance_id"))


def update(address: str, prior: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """Swap the registered workers for the desired ones (new ones first)."""
    attrs = dict(prior)
    attrs.update({k: v for k, v in desired.items() if k not in ROUTER_COMPUTED})
    if find(attrs) is None:
        raise ProviderError(f"{address}: the router process (instance {attrs.get('instance_id')}) is not running")
    with SmgClient.for_router(attrs) as client:
        attrs["workers"] = client.sync(flatten(attrs.get("worker_sets")))
    return attrs


def read(address: str, attributes: dict[str, Any]) -> ReadResult:
    """Process alive, /health, and the workers smg holds (`workers`; a different set
    than configured shows as changed `worker_sets`)."""
    attrs, gone = process.observe(dict(attributes), "router")
    if attrs is None:
        return ReadResult(exists=False, attributes=dict(attributes), detail=gone)
    with SmgClient(attrs.get("endpoint") or f"http://{attrs.get('host')}:{attrs.get('port')}", timeout=1.5) as client:
        return observe(client, attrs)


def delete(settings: Any, address: str, attributes: dict[str, Any]) -> None:
    proc = find(attributes)
    if proc is not None and not process.stop_process(proc, settings.stop_timeout_s):
        raise ProviderError(f"{address}: router process {proc.pid} survived SIGKILL")
    _release(attributes)

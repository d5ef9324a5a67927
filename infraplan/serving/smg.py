"""The SGLang Model Gateway (`smg`) as infraplan speaks to it: its `/workers` HTTP API
and its launch flags (smg 1.13)."""

from __future__ import annotations

import math
import os
import time
from typing import Any

import httpx

from infraplan.errors import ProviderError
from infraplan.serving.http import status_error, transport_error

RETRY_FLAGS = {"max_retries": "--retry-max-retries", "initial_backoff_ms": "--retry-initial-backoff-ms",
               "max_backoff_ms": "--retry-max-backoff-ms", "backoff_multiplier": "--retry-backoff-multiplier",
               "jitter_factor": "--retry-jitter-factor"}
SYNC_TIMEOUT_S = 30.0
#: a router's fault-isolation blocks (config key -> {field: smg flag}); durations go as whole seconds
ISOLATION_FLAGS: dict[str, dict[str, str]] = {
    "circuit_breaker": {"failure_threshold": "--cb-failure-threshold", "success_threshold": "--cb-success-threshold",
                        "open_duration": "--cb-timeout-duration-secs", "window": "--cb-window-duration-secs"},
    "timeouts": {"request": "--request-timeout-secs", "worker_startup": "--worker-startup-timeout-secs",
                 "idle_connection": "--idle-connection-timeout-secs"},
    "rate_limit": {"max_concurrent_requests": "--max-concurrent-requests", "queue_size": "--queue-size",
                   "queue_timeout": "--queue-timeout-secs", "tokens_per_second": "--rate-limit-tokens-per-second"},
    "health_check": {"interval": "--health-check-interval-secs", "timeout": "--health-check-timeout-secs",
                     "failure_threshold": "--health-failure-threshold",
                     "success_threshold": "--health-success-threshold", "endpoint": "--health-check-endpoint"},
}
ISOLATION_BLOCKS = tuple(ISOLATION_FLAGS)
#: `enabled: false` of a block -> its smg flag
DISABLE_FLAGS = {"circuit_breaker": "--disable-circuit-breaker", "health_check": "--disable-health-check"}
#: a router's attributes that are smg launch flags: a change starts a new smg
LAUNCH_ATTRS = ("retries", *ISOLATION_BLOCKS)
_DURATIONS = {"open_duration", "window", "request", "worker_startup", "idle_connection", "queue_timeout",
              "interval", "timeout"}


def flatten(worker_sets: Any) -> list[str]:
    """The worker URLs of all sets, in order, each once; ProviderError while not resolved."""
    if not isinstance(worker_sets, list) or not all(isinstance(s, list) for s in worker_sets):
        raise ProviderError(f"the router's worker sets are not known yet: {worker_sets!r}")
    out: list[str] = []
    for s in worker_sets:
        out.extend(u for u in s if isinstance(u, str) and u not in out)
    return out


def retry_args(retries: dict[str, Any] | None) -> list[str]:
    """smg launch flags for a router's `retries` attribute (absent or empty: smg's defaults)."""
    retries = retries or {}
    if retries.get("enabled") is False:
        return ["--disable-retries"]
    out: list[str] = []
    for key, flag in RETRY_FLAGS.items():
        if retries.get(key) is not None:
            out += [flag, str(retries[key])]
    return out


def isolation_args(attributes: dict[str, Any]) -> list[str]:
    """smg launch flags for a router's circuit_breaker, timeouts, rate_limit and health_check."""
    from infraplan.util.durations import parse_duration

    out: list[str] = []
    for block, flags in ISOLATION_FLAGS.items():
        values = attributes.get(block) or {}
        if values.get("enabled") is False:
            out.append(DISABLE_FLAGS[block])
            continue
        for key, flag in flags.items():
            v = values.get(key)
            if v is None:
                continue
            out += [flag, str(math.ceil(parse_duration(v))) if key in _DURATIONS else str(v)]
    return out


def launch_args(attributes: dict[str, Any]) -> list[str]:
    """Every smg launch flag a router's attributes ask for beyond host, ports and policy."""
    return [*retry_args(attributes.get("retries")), *isolation_args(attributes)]


#: `worker_keys` entry for workers not listed in the router's worker sets (a canary's, during a rollout):
#: present when every keyed fleet behind the router shares one key.
ANY_WORKER = "*"


def worker_keys(attributes: dict[str, Any]) -> dict[str, str]:
    """Worker URL -> its SGLang API key, from a router's resolved `worker_sets` and the parallel
    `worker_api_keys` (one per fleet; None where the fleet has no key)."""
    keys = attributes.get("worker_api_keys") or []
    sets = attributes.get("worker_sets") or []
    out: dict[str, str] = {}
    for urls, key in zip(sets, keys):
        if not key:
            continue
        for url in (urls if isinstance(urls, list) else [urls]):
            if isinstance(url, str):
                out[url] = key
    distinct = {k for k in keys if k}
    if len(distinct) == 1:
        out[ANY_WORKER] = distinct.pop()
    return out


class SmgClient:
    """The parts of smg's HTTP API a router's lifecycle needs."""

    @classmethod
    def for_router(cls, attributes: dict[str, Any], timeout: float = 5.0) -> SmgClient:
        """A client for a router in state: its endpoint, and the key its control plane takes,
        from the environment variable the record names: ``admin_key_env`` (smg's
        `--control-plane-api-keys`), else ``api_key_env`` (smg's `--api-key`, which then
        guards /workers too), else none."""
        key = None
        for name in ("admin_key_env", "api_key_env"):
            env = attributes.get(name)
            if env and os.environ.get(env):
                key = os.environ[env]
                break
        return cls(attributes["endpoint"], timeout=timeout, api_key=key, worker_keys=worker_keys(attributes))

    def __init__(self, endpoint: str, timeout: float = 5.0, api_key: str | None = None,
                 worker_keys: dict[str, str] | None = None):
        self.endpoint = endpoint
        # the workers' own SGLang --api-key, handed to smg on registration (never on its command line):
        # smg's worker detection calls /v1/models, /server_info with it, and forwards requests with it
        self.worker_keys = dict(worker_keys or {})
        # a control-plane key (smg --control-plane-api-keys) guards /workers on routers others can reach
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = httpx.Client(base_url=endpoint, timeout=timeout, trust_env=False, headers=headers)

    def __enter__(self) -> SmgClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        what = f"smg at {self.endpoint}: {method} {path}"
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what) from exc
        err = status_error(resp.status_code, what, resp.text[:200])
        if err is not None:
            raise err
        return resp

    def health(self) -> bool:
        try:
            return self._http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def workers(self) -> list[dict[str, Any]]:
        """Every worker smg lists, draining ones included."""
        data = self._call("GET", "/workers").json()
        return [w for w in data.get("workers", []) if isinstance(w, dict)]

    def serving(self) -> list[str]:
        """URLs of the workers that take new requests (not draining), sorted."""
        return sorted(w["url"] for w in self.workers() if w.get("status") != "draining")

    def add(self, url: str) -> None:
        """Register a worker, with its API key when it has one."""
        key = self.worker_keys.get(url) or self.worker_keys.get(ANY_WORKER)
        self._call("POST", "/workers", json={"url": url, **({"api_key": key} if key else {})})

    def remove(self, worker_id: str) -> None:
        self._call("DELETE", f"/workers/{worker_id}")

    def sync(self, want: list[str], timeout: float = SYNC_TIMEOUT_S) -> list[str]:
        """Make smg hold exactly `want`: register new workers and wait until they serve,
        then remove the others and wait until smg dropped them. Returns the workers held."""
        have = {w["url"]: w for w in self.workers()}
        for url in want:
            if url not in have:
                self.add(url)
        self._wait(lambda ws: all(any(w["url"] == u and w.get("status") == "ready" and w.get("is_healthy", True)
                                      for w in ws) for u in want),
                   timeout, f"workers {want} to be registered")
        leaving = [w for url, w in have.items() if url not in want]
        for w in leaving:
            if w.get("status") != "draining":
                self.remove(w["id"])
        gone = {w["url"] for w in leaving}
        self._wait(lambda ws: not any(w["url"] in gone for w in ws), timeout, f"workers {sorted(gone)} to be removed")
        return self.serving()

    def _wait(self, done: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            workers = self.workers()
            if done(workers):
                return
            if time.monotonic() > deadline:
                seen = [(w.get("url"), w.get("status")) for w in workers]
                raise ProviderError(f"smg at {self.endpoint}: timed out after {timeout:g}s waiting for {what} "
                                    f"(it lists {seen})")
            time.sleep(0.1)

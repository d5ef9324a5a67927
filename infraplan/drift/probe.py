"""Probing one SGLang server: readiness, health_generate, served models and request counters, under a deadline.

Readiness is `/ready` (SGLang 0.5.23: at once, no generation; it turns 503 once a health
check failed), or `/health` on a server without it. `/health` and `/health_generate` run a
one-token generation and sleep 1 s first, so their probes get that second on top of the
probe timeout.
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from dataclasses import dataclass, field

import httpx

from infraplan.drift.settings import DriftSettings
from infraplan.errors import InfraplanError
from infraplan.serving.http import Failure, failure
from infraplan.serving.sglang_client import HEALTH_GENERATION_S

REQUESTS_METRIC = "sglang:num_requests_total"
RUNNING_METRIC = "sglang:num_running_reqs"


@dataclass
class Probe:
    """What the server's own endpoints said (health, served models, request counters)."""

    health: str | None = None  # "ok", or why not ("HTTP 503", "connection refused")
    health_route: str = "/ready"  # what `health` answered: /ready, or /health where the server has no /ready
    health_generate: str | None = None
    models: list[str] | None = None
    requests: float | None = None
    running: float | None = None
    error: str | None = None  # the server could not be asked (timeout, garbage): which endpoint, why
    notes: list[str] = field(default_factory=list)


class _Deadline(Exception):
    pass


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # built once: ~30 ms of CPU each time otherwise


class Prober:
    """Probes SGLang servers; one short-lived keep-alive connection per server, bounded by a deadline."""

    def __init__(self, settings: DriftSettings):
        self.s = settings
        self._local = threading.local()

    def close(self) -> None:
        pass

    @property
    def http(self) -> httpx.Client:
        return self._local.http

    def _get(self, url: str, headers: dict, deadline: float, extra_s: float = 0.0) -> httpx.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Deadline()
        return self.http.get(url, headers=headers, timeout=min(self.s.probe_timeout_s + extra_s, remaining))

    def _check(self, url: str, headers: dict, deadline: float, *, generates: bool = False,
               absent_ok: bool = False) -> tuple[str, str | None]:
        """("ok"|why-not, error): retried; a timeout or garbage on the last try is an error.

        `generates`: the route runs a generation (1 s more). `absent_ok`: a 404 answers "absent" at once.
        """
        why, err = "no answer", None
        timeout = self.s.probe_timeout_s + (HEALTH_GENERATION_S if generates else 0.0)
        for attempt in range(self.s.retries):
            if attempt:
                time.sleep(min(0.1 * attempt, max(0.0, deadline - time.monotonic())))
            try:
                resp = self._get(url, headers, deadline, HEALTH_GENERATION_S if generates else 0.0)
            except _Deadline:
                break
            except httpx.HTTPError as exc:
                kind = failure(exc)
                if kind is Failure.REFUSED:
                    why, err = f"connection refused ({type(exc).__name__})", None
                elif kind is Failure.TIMEOUT:
                    why, err = None, f"no answer from {url} within {timeout:g}s"
                else:  # garbage: not HTTP, cut off
                    why, err = None, f"{url} answered garbage ({type(exc).__name__}: {exc})"
                continue
            if resp.status_code == 200:
                return "ok", None
            if resp.status_code == 404 and absent_ok:
                return "absent", None
            why, err = f"HTTP {resp.status_code}", None
        if err is None and why == "no answer":
            err = f"no answer from {url} within the {self.s.deadline_s:g}s budget"
        return why or "no answer", err

    def probe(self, endpoint: str, *, api_key: str | None, metrics: bool, healthy: bool | None = None) -> Probe:
        """Ask one server. `healthy=True` (the provider's read just saw it ready) skips the readiness probe."""
        # trust_env=False: servers are reached directly, never through a proxy from the environment
        transport = httpx.HTTPTransport(verify=_ssl_context())
        with httpx.Client(transport=transport, timeout=self.s.probe_timeout_s, trust_env=False) as http:
            self._local.http = http
            try:
                return self._probe(endpoint, api_key, metrics, healthy)
            finally:
                self._local.http = None

    def _probe(self, endpoint: str, api_key: str | None, metrics: bool, healthy: bool | None) -> Probe:
        p = Probe()
        base = endpoint.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        deadline = time.monotonic() + self.s.deadline_s
        if healthy is True:
            p.health = "ok"
        else:
            p.health, p.error = self._check(f"{base}/ready", headers, deadline, absent_ok=True)
            if p.health == "absent":  # SGLang before 0.5.23
                p.health_route = "/health"
                p.health, p.error = self._check(f"{base}/health", headers, deadline, generates=True)
            if p.error or p.health != "ok":
                return p
        if self.s.health_generate:
            p.health_generate, p.error = self._check(f"{base}/health_generate", headers, deadline, generates=True)
            if p.error or p.health_generate != "ok":
                return p
        try:
            data = self._json(f"{base}/v1/models", headers, deadline)
            p.models = [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]
        except _ProbeFailed as exc:
            p.error = str(exc)
            return p
        if metrics:
            self._metrics(base, headers, deadline, p)
        return p

    def _json(self, url: str, headers: dict, deadline: float) -> dict:
        try:
            resp = self._get(url, headers, deadline)
        except _Deadline:
            raise _ProbeFailed(f"no time left for {url} within the {self.s.deadline_s:g}s budget") from None
        except httpx.HTTPError as exc:
            if failure(exc) is Failure.TIMEOUT:
                raise _ProbeFailed(f"no answer from {url} within {self.s.probe_timeout_s:g}s") from None
            raise _ProbeFailed(f"{url}: {type(exc).__name__}: {exc}") from None
        if resp.status_code != 200:
            raise _ProbeFailed(f"{url} answered HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError:
            raise _ProbeFailed(f"{url} answered garbage (not JSON: {resp.text[:40]!r})") from None
        if not isinstance(data, dict):
            raise _ProbeFailed(f"{url} answered garbage (JSON {type(data).__name__}, expected an object)")
        return data

    def _metrics(self, base: str, headers: dict, deadline: float, p: Probe) -> None:
        from infraplan.serving.sglang_client import metric_total, parse_metrics

        url = f"{base}/metrics"
        try:
            resp = self._get(url, headers, deadline)
        except (_Deadline, httpx.HTTPError) as exc:
            p.error = f"{url}: {type(exc).__name__ if not isinstance(exc, _Deadline) else 'out of time'}"
            return
        if resp.status_code == 404:
            p.notes.append(f"{url} is not served (SGLang needs --enable-metrics): idle time unknown")
            return
        if resp.status_code != 200:
            p.error = f"{url} answered HTTP {resp.status_code}"
            return
        try:
            m = parse_metrics(resp.text)
        except InfraplanError as exc:
            p.error = f"{url} answered garbage ({exc})"
            return
        p.requests = metric_total(m, REQUESTS_METRIC) or 0.0
        p.running = metric_total(m, RUNNING_METRIC) or 0.0


class _ProbeFailed(Exception):
    pass

"""Drift detection: where the running fleet has moved away from the state and the config.

`run_drift(workspace, options)` reads one consistent state snapshot (no lock),
refreshes every replica through its provider and probes its server, all with
bounded concurrency and per-probe timeouts, lists instances for orphans, and
returns a `DriftReport`. It never writes resource state; it records the run in
the ``drift_runs`` table and request counters in ``drift_activity`` (neither
bumps the serial).

Kinds of finding:

    missing    a replica in state whose process / cluster / server no longer exists
    changed    the real thing differs from state or config (replica count, model,
               revision, served name, server args; accelerators/cloud/region/spot
               when a provider's read() reports them)
    unhealthy  exists but /health or /health_generate fails (after retries)
    orphaned   an instance carrying this project's marks that is in no state
    idle       a serving replica whose request counter has not moved for longer
               than the idle window (its own /metrics)
    error      the provider, cloud or server could not be asked (timeout, garbage)

Exit codes: 0 no drift; 2 drift found; 1 error (any ``error`` finding, or the
run itself failed): a resource that cannot be asked is never "no drift".

Report JSON (``format_version`` "1.0")::

    {
      "format_version": "1.0",
      "infraplan_version": "0.1.0",
      "started_at": "2026-11-23T13:00:00Z", "finished_at": "…", "duration_s": 1.234,
      "state": {"path": "…/infraplan.db", "lineage": "…", "serial": 7},
      "config": {"path": "…", "digest": "…"},
      "checked": {"replicas": 12, "fleets": 3, "instances_listed": 12},
      "exit_code": 2, "drift": true,
      "counts": {"missing": 1, "changed": 1, "unhealthy": 0, "orphaned": 0, "idle": 0, "error": 0},
      "findings": [
        {"kind": "changed", "address": "fleet.chat[1]", "provider": "local",
         "instance_id": "…", "summary": "model_revision differs from state",
         "evidence": [{"field": "model_revision", "expected": "abc123", "seen": "def456",
                       "against": "state", "source": "http://127.0.0.1:30001/model_info"}],
         "detail": null, "resource": {…}, "fingerprint": "sha256…",
         "new": true, "first_seen": "2026-11-23T13:00:00Z"}
      ],
      "skipped": [{"address": "fleet.chat[2]", "reason": "being created by a running apply"}],
      "notes": ["…"],
      "alerts": {"appeared": 1, "cleared": 0, "sent": 1, "error": null},
      "alert_targets": ["oncall: slack://…", "--alert: json://…"]
    }

Alert destinations come from the config's ``alert`` blocks whose `events` include
``drift`` and from ``--alert``; only their schemes are ever shown. A block's
`min_severity` narrows what it gets (see `SEVERITY`). Idle windows come from each
fleet's ``idle_after``; ``--idle-after`` overrides them for every fleet.

`evidence[].against` says what the seen value was compared with: ``state``,
``config`` or ``expected`` (a fact such as "answers 200"). A finding's
`fingerprint` hashes its kind, address and evidence (not `detail`, which may
vary between runs); alerts are de-duplicated on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field

from infraplan.errors import InfraplanError, StateError
from infraplan.models.types import parse_duration
from infraplan.util.time import iso_utc
from infraplan.models.base import StrictModel
from infraplan.providers.contract import Instance, ListsInstances
from infraplan.providers.registry import ProviderSet
from infraplan.plan.refresh import Observation, record_key
from infraplan.serving.http import Failure, failure
from infraplan.models.actions import Action

FORMAT_VERSION = "1.0"
KINDS = ("missing", "changed", "unhealthy", "orphaned", "idle", "error")
EXIT_CLEAN, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2
IN_FLIGHT = {"creating": "being created", "updating": "being updated", "deleting": "being deleted"}

# Replica attributes compared with what the real thing reports, and who reports them.
OBSERVED = {
    "model_source": "/model_info",
    "model_revision": "/model_info",
    "served_name": "/server_info",
    "args": "/server_info",
    "accelerators": "provider",  # SkyPilot status (when a provider reports it)
    "cloud": "provider",
    "region": "provider",
    "spot": "provider",
}
# How serious each kind of finding is, for an alert block's `min_severity`.
SEVERITY = {"idle": "info", "changed": "warning", "orphaned": "warning",
            "missing": "error", "unhealthy": "error", "error": "error"}
_RANK = {"info": 0, "warning": 1, "error": 2}
REQUESTS_METRIC = "sglang:num_requests_total"
RUNNING_METRIC = "sglang:num_running_reqs"


# -- settings ------------------------------------------------------------------------
class DriftSettings(StrictModel):
    """Drift and alert settings (a `drift:` config block, or command-line flags)."""

    alerts: list[str] = Field(default_factory=list, description="Apprise URLs to alert when drift appears or clears.")
    alert_min_severity: dict[str, str] = Field(
        default_factory=dict, description="URL -> least severity (info, warning, error) it is alerted about; else all.")
    alert_names: dict[str, str] = Field(default_factory=dict, description="URL -> the alert block that set it, for output.")
    idle_after_s: float | None = Field(None, gt=0, description="Report replicas with no requests for this long as idle "
                                       "(every fleet; overrides `fleet_idle_after_s`).")
    fleet_idle_after_s: dict[str, float] = Field(
        default_factory=dict, description="Fleet address -> idle window in seconds (each fleet's `idle_after`).")
    probe_timeout_s: float = Field(2.0, gt=0, description="Timeout of one probe request.")
    retries: int = Field(2, ge=1, description="Tries of a failing health probe before it counts.")
    deadline_s: float = Field(15.0, gt=0, description="Most time spent on one replica.")
    parallelism: int = Field(16, ge=1, le=1000, description="Replicas checked at once (local servers: more threads only fight over the GIL).")
    health_generate: bool = Field(True, description="Also probe /health_generate (a one-token generation).")
    orphans: bool = Field(True, description="List instances to find orphans.")


def settings_from_config(config) -> DriftSettings:
    """Settings from the loaded config: its `alert` blocks for ``drift`` and its fleets' `idle_after`."""
    s = DriftSettings()
    urls, severity, names = list(s.alerts), dict(s.alert_min_severity), dict(s.alert_names)
    for name, block in config.alerts.items():
        if "drift" not in block.events:
            continue
        if block.url not in urls:
            urls.append(block.url)
        names.setdefault(block.url, name)
        if block.min_severity is not None:
            severity[block.url] = block.min_severity
    windows = dict(s.fleet_idle_after_s)
    for address, rc in config.fleets.items():
        if rc.block.idle_after:
            windows[address] = parse_duration(rc.block.idle_after)
    return s.model_copy(update={"alerts": urls, "alert_min_severity": severity, "alert_names": names,
                                "fleet_idle_after_s": windows})


def idle_window(settings: DriftSettings, fleet: str | None) -> float | None:
    """The idle window of a replica of `fleet`: --idle-after if given, else the fleet's `idle_after`."""
    return settings.idle_after_s or settings.fleet_idle_after_s.get(fleet or "")


def watches_idle(settings: DriftSettings) -> bool:
    """Whether any replica has an idle window."""
    return bool(settings.idle_after_s or settings.fleet_idle_after_s)



# -- findings ----------------------------------------------------------------------
@dataclass
class Evidence:
    """Expected vs seen for one field, and which endpoint or API said so."""

    field: str
    expected: Any
    seen: Any
    source: str
    against: str = "state"  # "state", "config" or "expected"


@dataclass
class Finding:
    """One piece of drift (or one resource that could not be asked)."""

    kind: str
    address: str
    summary: str
    evidence: list[Evidence] = field(default_factory=list)
    provider: str | None = None
    instance_id: str | None = None
    detail: str | None = None
    resource: dict[str, Any] = field(default_factory=dict)
    new: bool | None = None
    first_seen: str | None = None

    @property
    def fingerprint(self) -> str:
        body = {"kind": self.kind, "address": self.address,
                "evidence": [[e.field, e.expected, e.seen, e.against] for e in self.evidence]}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["fingerprint"] = self.fingerprint
        return d


@dataclass
class DriftReport:
    """The outcome of one drift run."""

    started_at: str
    finished_at: str = ""
    duration_s: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alerts: dict[str, Any] = field(default_factory=dict)
    alert_targets: list[str] = field(default_factory=list)  # redacted: "name: scheme://…"
    observations: dict[str, Observation] = field(default_factory=dict, repr=False)  # for --plan-out

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in KINDS}
        for f in self.findings:
            out[f.kind] += 1
        return out

    @property
    def drift(self) -> bool:
        return any(f.kind != "error" for f in self.findings)

    @property
    def exit_code(self) -> int:
        if any(f.kind == "error" for f in self.findings):
            return EXIT_ERROR
        return EXIT_DRIFT if self.drift else EXIT_CLEAN

    def to_json(self) -> dict[str, Any]:
        from infraplan import __version__
        from infraplan.util.redact import redact

        return redact({
            "format_version": FORMAT_VERSION, "infraplan_version": __version__,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 3), "state": self.state, "config": self.config,
            "checked": self.checked, "exit_code": self.exit_code, "drift": self.drift,
            "counts": self.counts(), "findings": [f.to_json() for f in self.findings],
            "skipped": self.skipped, "notes": self.notes, "alerts": self.alerts,
            "alert_targets": self.alert_targets,
        })


# -- probing one server ----------------------------------------------------------------
@dataclass
class Probe:
    """What the server's own endpoints said (health, served models, request counters)."""

    health: str | None = None  # "ok", or why not ("HTTP 503", "connection refused")
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

    def _get(self, url: str, headers: dict, deadline: float) -> httpx.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Deadline()
        return self.http.get(url, headers=headers, timeout=min(self.s.probe_timeout_s, remaining))

    def _check(self, url: str, headers: dict, deadline: float) -> tuple[str, str | None]:
        """("ok"|why-not, error): retried; a timeout or garbage on the last try is an error."""
        why, err = "no answer", None
        for attempt in range(self.s.retries):
            if attempt:
                time.sleep(min(0.1 * attempt, max(0.0, deadline - time.monotonic())))
            try:
                resp = self._get(url, headers, deadline)
            except _Deadline:
                break
            except httpx.HTTPError as exc:
                kind = failure(exc)
                if kind is Failure.REFUSED:
                    why, err = f"connection refused ({type(exc).__name__})", None
                elif kind is Failure.TIMEOUT:
                    why, err = None, f"no answer from {url} within {self.s.probe_timeout_s:g}s"
                else:  # garbage: not HTTP, cut off
                    why, err = None, f"{url} answered garbage ({type(exc).__name__}: {exc})"
                continue
            if resp.status_code == 200:
                return "ok", None
            why, err = f"HTTP {resp.status_code}", None
        if err is None and why == "no answer":
            err = f"no answer from {url} within the {self.s.deadline_s:g}s budget"
        return why or "no answer", err

    def probe(self, endpoint: str, *, api_key: str | None, metrics: bool, healthy: bool | None = None) -> Probe:
        """Ask one server. `healthy=True` (the provider's read just saw /health answer 200) skips /health."""
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
            p.health, p.error = self._check(f"{base}/health", headers, deadline)
            if p.error or p.health != "ok":
                return p
        if self.s.health_generate:
            p.health_generate, p.error = self._check(f"{base}/health_generate", headers, deadline)
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


# -- one run -------------------------------------------------------------------------
@dataclass
class _Checked:
    rec: Any
    obs: Observation
    probe: Probe | None = None


def now_iso(ts: float | None = None) -> str:
    return iso_utc(time.time() if ts is None else ts)


def detect(config, snapshot, providers: ProviderSet, settings: DriftSettings, *,
           activity: dict[str, dict] | None = None, finders: list | None = None,
           now: float | None = None) -> tuple[DriftReport, dict[str, dict]]:
    """Compare the real fleet with `snapshot` and `config`; returns the report and new activity rows.

    Pure with respect to state: the caller decides what to record.
    """
    from infraplan.plan.expand import expand

    t0 = time.monotonic()
    now = time.time() if now is None else now
    report = DriftReport(started_at=now_iso(now))
    desired = expand(config) if config is not None else {}
    replicas, skipped = [], []
    for rec in snapshot.resources:
        if rec.kind != "replica" or rec.deposed:
            continue
        if rec.status in IN_FLIGHT or rec.pending:
            skipped.append({"address": rec.address, "reason": f"{IN_FLIGHT.get(rec.status, 'changing')} by a running apply"})
            continue
        replicas.append(rec)
    report.skipped = skipped

    checked = _check_all(replicas, providers, settings)
    report.observations = {c.obs.key: c.obs for c in checked}
    findings: list[Finding] = []
    new_activity: dict[str, dict] = {}
    for c in checked:
        findings.extend(_replica_findings(c, desired.get(c.rec.address)))
        window = idle_window(settings, (c.rec.attributes or {}).get("fleet"))
        if window and c.probe is not None and c.probe.requests is not None and not c.probe.error:
            row, idle = _idle(c, (activity or {}).get(c.rec.address), window, now)
            new_activity[c.rec.address] = row
            if idle:
                findings.append(idle)
        if c.probe is not None:
            report.notes.extend(c.probe.notes)
    findings.extend(_fleet_findings(desired, snapshot, checked, skipped))
    findings.extend(_router_findings([r for r in snapshot.resources if r.kind == "router" and not r.deposed
                                      and r.status not in IN_FLIGHT and not r.pending], providers))
    listed = 0
    if settings.orphans:
        orphans, listed, errs = _orphans(snapshot, providers, {r.provider for r in replicas if r.provider}
                                         | {d.provider for d in desired.values() if d.kind == "replica" and d.provider},
                                         finders or [], settings.deadline_s * 2)
        findings.extend(orphans + errs)
    report.findings = sorted(findings, key=lambda f: (KINDS.index(f.kind), f.address))
    report.checked = {"replicas": len(replicas), "fleets": len({r.attributes.get("fleet") for r in replicas}),
                      "instances_listed": listed}
    report.state = {"lineage": snapshot.lineage, "serial": snapshot.serial}
    if config is not None:
        report.config = {"path": str(config.root), "digest": config.digest}
    report.duration_s = time.monotonic() - t0
    report.finished_at = now_iso()
    return report, new_activity


def _check_all(replicas, providers: ProviderSet, settings: DriftSettings) -> list[_Checked]:
    prober = Prober(settings)
    lock = threading.Lock()
    done: dict[str, _Checked] = {}

    def one(rec) -> None:
        key = record_key(rec)
        try:
            result = providers.get(rec.provider).read(rec.address, dict(rec.attributes))
            checked = _Checked(rec, Observation(key, result))
        except InfraplanError as exc:
            checked = _Checked(rec, Observation(key, None, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a provider bug must not hide the other resources
            checked = _Checked(rec, Observation(key, None, f"{type(exc).__name__}: {exc}"))
        result = checked.obs.result
        if result is not None and result.exists:
            endpoint = result.attributes.get("endpoint") or rec.attributes.get("endpoint")
            # only servers that speak HTTP are probed; for anything else the provider's read stands
            if endpoint and str(endpoint).startswith(("http://", "https://")):
                api_key = (rec.attributes.get("args") or {}).get("api_key")
                metrics = bool(idle_window(settings, rec.attributes.get("fleet")))
                checked.probe = prober.probe(endpoint, api_key=api_key, metrics=metrics,
                                             healthy=result.healthy)
        with lock:
            done[key] = checked

    pool = ThreadPoolExecutor(max_workers=max(1, min(settings.parallelism, len(replicas) or 1)))
    try:
        futures = {pool.submit(one, rec): rec for rec in replicas}
        # every probe is bounded by the per-replica deadline; this bounds the provider reads too
        budget = settings.deadline_s * (1 + len(replicas) / settings.parallelism) + 5.0
        wait(futures, timeout=budget)  # what is not done by then is reported as an error below
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        prober.close()
    out = []
    for rec in replicas:
        key = record_key(rec)
        with lock:
            checked = done.get(key)
        out.append(checked or _Checked(rec, Observation(key, None, "no answer within the run's time budget")))
    return out


def _router_findings(routers, providers: ProviderSet) -> list[Finding]:
    """Routers (few per project, read one at a time): gone, unhealthy, or holding other workers."""
    out: list[Finding] = []
    for rec in routers:
        attrs = rec.attributes or {}
        base = dict(address=rec.address, provider=rec.provider, instance_id=attrs.get("instance_id"),
                    resource={k: attrs.get(k) for k in ("endpoint", "pid") if attrs.get(k) is not None})
        src = f"provider {rec.provider}"
        try:
            result = providers.get(rec.provider).read(rec.address, dict(attrs))
        except InfraplanError as exc:
            out.append(Finding("error", summary=f"cannot ask provider {rec.provider}: {exc}",
                               evidence=[Evidence("read", "an answer", str(exc), src, "expected")], **base))
            continue
        endpoint = attrs.get("endpoint") or src
        if not result.exists:
            out.append(Finding("missing", summary=f"{rec.address} no longer exists",
                               evidence=[Evidence("exists", f"router cluster {attrs['cluster_name']}"
                                                  if attrs.get("cluster_name") else f"router pid {attrs.get('pid')}",
                                                  result.detail or "not found", src)], **base))
        elif result.healthy is False:
            out.append(Finding("unhealthy", summary=f"{rec.address} fails /health: {result.detail}",
                               evidence=[Evidence("health", "HTTP 200", result.detail, endpoint + "/health",
                                                  "expected")], **base))
        elif result.detail:  # the router holds other workers than the state says
            out.append(Finding("changed", summary=f"{rec.address} routes to other workers than the state says",
                               evidence=[Evidence("workers", attrs.get("worker_sets"), result.attributes.get("workers"),
                                                  endpoint + "/workers", "state")], detail=result.detail, **base))
    return out


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return False


def _replica_findings(c: _Checked, desired) -> list[Finding]:
    rec, obs = c.rec, c.obs
    attrs = rec.attributes or {}
    base = dict(address=rec.address, provider=rec.provider, instance_id=attrs.get("instance_id"),
                resource={k: attrs.get(k) for k in ("endpoint", "pid", "fleet") if attrs.get(k) is not None})
    src = f"provider {rec.provider}"
    if obs.error:
        return [Finding("error", summary=f"cannot ask provider {rec.provider}: {obs.error}",
                        evidence=[Evidence("read", "an answer", obs.error, src, "expected")], **base)]
    result = obs.result
    if not result.exists:
        what = f"instance {attrs.get('instance_id')}" + (f" (pid {attrs['pid']})" if attrs.get("pid") else "")
        return [Finding("missing", summary=f"{rec.address} no longer exists",
                        evidence=[Evidence("exists", what, result.detail or "not found", src)], **base)]
    endpoint = result.attributes.get("endpoint") or attrs.get("endpoint") or ""
    p = c.probe
    out: list[Finding] = []
    if p is not None and p.error:
        return [Finding("error", summary=f"the server of {rec.address} cannot be asked: {p.error}",
                        evidence=[Evidence("server", "an answer", p.error, endpoint, "expected")],
                        detail=result.detail, **base)]
    if p is not None and (p.health != "ok" or (p.health_generate not in (None, "ok"))):
        route, why = ("/health", p.health) if p.health != "ok" else ("/health_generate", p.health_generate)
        out.append(Finding("unhealthy", summary=f"{rec.address} fails {route}: {why}",
                           evidence=[Evidence(route.strip("/"), "HTTP 200", why, endpoint + route, "expected")],
                           detail=result.detail, **base))
        return out  # an unhealthy server's other answers are not worth comparing
    evidence: list[Evidence] = []
    observed = result.attributes
    want = (desired.attributes if desired is not None else {})
    for key, route in OBSERVED.items():
        if key not in observed:
            continue
        source = endpoint + route if route.startswith("/") else src
        if key == "args":
            evidence.extend(_args_evidence(attrs.get("args") or {}, observed.get("args") or {},
                                           want.get("args") if desired is not None else None, source))
            continue
        seen = observed.get(key)
        if not _same(seen, attrs.get(key)):
            evidence.append(Evidence(key, attrs.get(key), seen, source, "state"))
        elif route != "provider" and desired is not None and key in want and not _same(seen, want.get(key)):
            # provider-reported keys are compared with state only: a provider that does not
            # observe them (local) echoes the state value, which says nothing about the config
            evidence.append(Evidence(key, want.get(key), seen, source, "config"))
    served = attrs.get("served_name")
    if p is not None and p.models is not None and served and served not in p.models:
        evidence.append(Evidence("served_name", served, p.models, endpoint + "/v1/models", "state"))
    if evidence:
        fields = sorted({e.field.split(".")[0] for e in evidence})
        against = " and ".join(sorted({e.against for e in evidence}))
        out.append(Finding("changed", summary=f"{', '.join(fields)} differ{'s' if len(fields) == 1 else ''} from {against}",
                           evidence=evidence, detail=result.detail, **base))
    return out


def _args_evidence(state_args: dict, seen_args: dict, config_args: dict | None, source: str) -> list[Evidence]:
    out = []
    for k in sorted(set(state_args) | set(seen_args)):
        seen = seen_args.get(k)
        if not _same(seen, state_args.get(k)):
            out.append(Evidence(f"args.{k}", state_args.get(k), seen, source, "state"))
        elif config_args is not None and not _same(seen, config_args.get(k)):
            out.append(Evidence(f"args.{k}", config_args.get(k), seen, source, "config"))
    return out


def _fleet_findings(desired, snapshot, checked: list[_Checked], skipped) -> list[Finding]:
    """Replica counts: config vs what really runs (state's count in the detail)."""
    in_state: dict[str, int] = {}
    running: dict[str, int] = {}
    for rec in snapshot.resources:
        if rec.kind == "replica" and not rec.deposed:
            fleet = (rec.attributes or {}).get("fleet")
            in_state[fleet] = in_state.get(fleet, 0) + 1
    for c in checked:
        fleet = (c.rec.attributes or {}).get("fleet")
        gone = c.obs.result is not None and not c.obs.result.exists
        running[fleet] = running.get(fleet, 0) + (0 if gone else 1)
    for s in skipped:  # in flight: counted as running, a running apply is changing them
        rec = snapshot.get(s["address"])
        fleet = (rec.attributes or {}).get("fleet") if rec else None
        running[fleet] = running.get(fleet, 0) + 1
    want = {a: d.attributes.get("replicas") for a, d in desired.items() if d.kind == "fleet"}
    out = []
    for fleet in sorted(set(want) | {f for f in in_state if f}):
        n_want = want.get(fleet, 0)
        n_run = running.get(fleet, 0)
        if n_want != n_run:
            state_n = in_state.get(fleet, 0)
            out.append(Finding("changed", address=fleet, summary=f"{fleet} runs {n_run} replica(s), the config wants {n_want}",
                               evidence=[Evidence("replicas", n_want, n_run, "refresh", "config")],
                               detail=f"state records {state_n}"))
    return out


def _idle(c: _Checked, row: dict | None, window: float, now: float) -> tuple[dict, Finding | None]:
    attrs = c.rec.attributes or {}
    iid = attrs.get("instance_id")
    requests, running = c.probe.requests or 0.0, c.probe.running or 0.0
    started = (c.obs.result.attributes or {}).get("started_at") or attrs.get("started_at")
    if row is None or row.get("instance_id") != iid:
        since = float(started) if requests == 0 and started else now
    elif requests != row.get("requests") or running > 0:
        since = now
    else:
        since = float(row["changed_at"])
    new_row = {"instance_id": iid, "requests": requests, "changed_at": since, "seen_at": now}
    if running > 0 or now - since < window:
        return new_row, None
    endpoint = c.obs.result.attributes.get("endpoint") or attrs.get("endpoint") or ""
    finding = Finding("idle", address=c.rec.address, provider=c.rec.provider, instance_id=iid,
                      summary=f"{c.rec.address} served no request for {_human(now - since)} (window {_human(window)})",
                      evidence=[Evidence("requests", f"a request within {_human(window)}",
                                         f"{int(requests)} in total, unchanged since {now_iso(since)}",
                                         endpoint + "/metrics", "expected")],
                      detail=f"idle for {int(now - since)}s",
                      resource={k: attrs.get(k) for k in ("endpoint", "pid", "fleet", "accelerators") if attrs.get(k)})
    return new_row, finding


def _human(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def known_ids(snapshot) -> set[str]:
    """Every instance id / cluster name recorded in state (deposed and in-flight objects too)."""
    known = set()
    for rec in snapshot.resources:
        a = rec.attributes or {}
        known.update(str(a[k]) for k in ("instance_id", "cluster_name", "node_id") if a.get(k))
    for rec in snapshot.resources:  # an in-flight create's intended identity
        pend = (rec.pending or {}).get("attributes") or {}
        known.update(str(pend[k]) for k in ("instance_id", "cluster_name", "node_id") if pend.get(k))
    return known


def list_orphans(snapshot, providers: ProviderSet, provider_keys: set[str], finders: list, timeout: float
                 ) -> tuple[list[tuple[Instance, Any]], int, list[Finding]]:
    """(orphan, the lister that can delete it) pairs, how many instances were listed, and listing errors."""
    known = known_ids(snapshot)
    listers: list[tuple[str, str, Any]] = []  # (name, address, object with list_instances)
    errors: list[Finding] = []

    def error(name: str, address: str, what: str) -> Finding:
        return Finding("error", address=address, provider=name, summary=f"cannot list instances of {name}: {what}",
                       evidence=[Evidence("list_instances", "an answer", what, name, "expected")])

    for key in sorted(provider_keys):
        try:
            provider = providers.get(key)
        except InfraplanError as exc:
            errors.append(error(key, f"provider.{key}", str(exc)))
            continue
        if isinstance(provider, ListsInstances):
            listers.append((key, f"provider.{key}", provider))
    for finder in finders:
        name = getattr(finder, "name", type(finder).__name__)
        listers.append((name, f"cloud.{name}", finder))
    found: list[tuple[Instance, Any]] = []
    if listers:
        pool = ThreadPoolExecutor(max_workers=min(8, len(listers)))
        try:
            futures = {pool.submit(obj.list_instances): (name, addr, obj) for name, addr, obj in listers}
            _, late = wait(futures, timeout=timeout)
            for fut, (name, addr, obj) in futures.items():
                if fut in late:
                    errors.append(error(name, addr, f"no answer within {timeout:g}s"))
                elif fut.exception() is not None:
                    exc = fut.exception()
                    errors.append(error(name, addr, str(exc) if isinstance(exc, InfraplanError) else f"{type(exc).__name__}: {exc}"))
                else:
                    found.extend((inst, obj) for inst in fut.result())
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    orphans = [(i, o) for i, o in found
               if not {i.instance_id, i.name, i.detail.get("cluster")} & known]
    return orphans, len(found), errors


def orphan_finding(inst: Instance) -> Finding:
    shown = {k: (now_iso(v) if k == "started_at" and isinstance(v, (int, float)) else v) for k, v in inst.detail.items()}
    what = ", ".join(f"{k} {v}" for k, v in shown.items() if v is not None and not isinstance(v, (dict, list)))
    return Finding("orphaned", address=f"{inst.provider}/{inst.instance_id}", provider=inst.provider,
                   instance_id=inst.instance_id,
                   summary=f"{inst.name or inst.instance_id} runs for this project but is in no state",
                   evidence=[Evidence("state record", "one for every instance of this project", "none",
                                     f"{inst.provider} instance listing", "expected")],
                   detail=what or None, resource={"name": inst.name, "endpoint": inst.endpoint, **inst.detail})


def _orphans(snapshot, providers, provider_keys, finders, timeout) -> tuple[list[Finding], int, list[Finding]]:
    orphans, listed, errors = list_orphans(snapshot, providers, provider_keys, finders, timeout)
    return [orphan_finding(i) for i, _ in orphans], listed, errors


# -- the run, with its records ------------------------------------------------------------
def run_drift(ws, settings: DriftSettings | None = None, *, finders: list | None = None,
              alert_urls: list[str] | None = None, record: bool = True) -> DriftReport:
    """Detect drift for a Workspace, record the run and send alerts. Takes no lock; writes no resource state."""
    from infraplan.state import StateStore
    from infraplan.util.identity import who

    if not Path(ws.state_path).exists():
        raise StateError(f"no state at {ws.state_path}: nothing has been applied yet (run `infraplan apply`)")
    config = ws.config
    s = settings or settings_from_config(config)
    store = StateStore(ws.state_path)  # opens (and upgrades the schema) but takes no lock
    try:
        snapshot = store.snapshot()
        providers = ws.providers(config)
        try:
            report, activity = detect(config, snapshot, providers, s, activity=store.drift_activity(), finders=finders)
        finally:
            providers.close()
        report.state["path"] = str(Path(ws.state_path).resolve())
        if record:
            if watches_idle(s):
                store.set_drift_activity(activity)
            urls = list(alert_urls if alert_urls is not None else s.alerts)
            report.alert_targets = alert_targets(urls, s.alert_names)
            report.alerts = send_drift_alerts(store, report, urls, s.alert_min_severity)
            store.add_drift_run(started_at=report.started_at, finished_at=report.finished_at,
                                duration_s=round(report.duration_s, 3), exit_code=report.exit_code,
                                counts=report.counts(), checked=report.checked.get("replicas", 0), who=who(),
                                findings=[{"kind": f.kind, "address": f.address, "summary": f.summary,
                                           "fingerprint": f.fingerprint} for f in report.findings])
        return report
    finally:
        store.close()


def alert_targets(urls: list[str], names: dict[str, str]) -> list[str]:
    """Where alerts go, for output: ``"oncall: slack://…"``; never the URL itself."""
    from infraplan.alerts import redact_url

    return [f"{names.get(u, '--alert')}: {redact_url(u)}" for u in urls]


def send_drift_alerts(store, report: DriftReport, urls: list[str], min_severity: dict[str, str]) -> dict[str, Any]:
    """Track the findings under topic ``drift`` and alert `urls`; a URL with a least severity
    gets only findings that severe, de-duplicated under its own topic (``drift:warning``)."""
    from dataclasses import replace

    from infraplan.alerts import track_and_alert

    groups: dict[str, list[str]] = {}
    for u in urls:
        groups.setdefault(min_severity.get(u) or "info", []).append(u)
    summary = track_and_alert(store, "drift", report, urls=groups.pop("info", []))
    for sev, group in sorted(groups.items(), key=lambda kv: _RANK[kv[0]]):
        picked = [replace(f) for f in report.findings if _RANK[SEVERITY[f.kind]] >= _RANK[sev]]  # copies: keep `new`
        extra = track_and_alert(store, f"drift:{sev}", picked, urls=group, label=f"{sev} and above")
        summary["sent"] += extra["sent"]
        if extra["error"]:
            summary["error"] = "; ".join(e for e in (summary["error"], extra["error"]) if e)
    return summary


def plan_from_report(ws, report: DriftReport, parallelism: int = 10):
    """The plan that brings the world back to the config, made from the run's own observations."""
    from infraplan.plan.planner import PlanOptions, make_plan

    config = ws.config
    providers = ws.providers(config)
    try:
        plan = make_plan(config, ws.snapshot(), providers, PlanOptions(parallelism=parallelism),
                         observations=report.observations)
    finally:
        providers.close()
    plan.secrets = frozenset(config.sensitive_values)
    plan.desired_config = ws._desired_snapshot(plan)
    return plan



# -- cleanup: remove orphans (and idle replicas), with approval, audited ------------------
@dataclass
class CleanupItem:
    """One thing `infraplan cleanup` removes."""

    kind: str  # "orphaned" or "idle"
    address: str
    summary: str
    instance: Instance | None = None
    lister: Any = field(default=None, repr=False)
    removed: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": self.address, "summary": self.summary, "removed": self.removed,
                "error": self.error, "instance": asdict(self.instance) if self.instance else None}


@dataclass
class CleanupPlan:
    """What cleanup would remove, made from a fresh look at the world."""

    items: list[CleanupItem]
    errors: list[Finding] = field(default_factory=list)
    providers: Any = field(default=None, repr=False)

    def render(self) -> str:
        if not self.items:
            lines = ["Nothing to clean up: no orphaned or idle resources found."]
        else:
            lines = ["Cleanup will remove:"]
            for i in self.items:
                lines.append(f"  - [{i.kind}] {i.address}: {i.summary}")
            if any(i.kind == "idle" for i in self.items):
                lines.append("  (idle replicas are still declared in the config: the next apply creates them again "
                             "unless you lower `replicas`)")
        for e in self.errors:
            lines.append(f"  ! {e.address}: {e.summary}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"items": [i.to_json() for i in self.items], "errors": [e.to_json() for e in self.errors]}


def plan_cleanup(ws, settings: DriftSettings, *, finders: list | None = None, include_idle: bool = False) -> CleanupPlan:
    """List orphans (and idle replicas when asked) now; nothing is changed."""
    from infraplan.plan.expand import expand
    from infraplan.state import StateStore

    config = ws.config
    ro = StateStore.open_readonly(ws.state_path)
    try:
        snapshot = ro.snapshot()
        activity = ro.drift_activity()
    finally:
        ro.close()
    providers = ws.providers(config)
    keys = {r.provider for r in snapshot.resources if r.kind == "replica" and r.provider} | \
           {d.provider for d in expand(config).values() if d.kind == "replica" and d.provider}
    orphans, _, errors = list_orphans(snapshot, providers, keys, finders or [], settings.deadline_s * 2)
    items = [CleanupItem("orphaned", f"{i.provider}/{i.instance_id}", orphan_finding(i).summary +
                         (f" ({orphan_finding(i).detail})" if orphan_finding(i).detail else ""), instance=i, lister=lister)
             for i, lister in orphans]
    if include_idle:
        report, _ = detect(config, snapshot, providers, settings.model_copy(update={"orphans": False}), activity=activity)
        items += [CleanupItem("idle", f.address, f.summary) for f in report.findings if f.kind == "idle"]
        errors += [f for f in report.findings if f.kind == "error"]
    return CleanupPlan(items=items, errors=errors, providers=providers)


def execute_cleanup(ws, todo: CleanupPlan) -> CleanupPlan:
    """Remove what `todo` lists: orphans under the state lock, idle replicas through an apply; all audited."""
    from infraplan.plan.model import Change, Plan
    from infraplan.util.identity import who

    store = ws.store()
    try:
        orphans = [i for i in todo.items if i.kind == "orphaned"]
        if orphans:
            with store.lock("cleanup", who=who()):
                known = known_ids(store.snapshot())
                for item in orphans:
                    if item.instance.instance_id in known:
                        item.error = "it is in state now (an apply recorded it); left alone"
                        continue
                    try:
                        item.lister.delete_instance(item.instance)
                        item.removed = True
                    except Exception as exc:  # noqa: BLE001 - reported per item
                        item.error = str(exc) if isinstance(exc, InfraplanError) else f"{type(exc).__name__}: {exc}"
                    store.audit("cleanup-orphan", address=item.address, who=who(),
                                details={"removed": item.removed, "error": item.error, "summary": item.summary,
                                         "instance": asdict(item.instance)})
        idle = [i for i in todo.items if i.kind == "idle"]
        if idle:
            snap = store.snapshot()
            changes = []
            for item in idle:
                rec = snap.get(item.address)
                if rec is None:
                    item.error = "no longer in state"
                    continue
                changes.append(Change(address=rec.address, kind="replica", action=Action.DELETE, provider=rec.provider,
                                      provider_type=(rec.attributes or {}).get("provider_type"), before=rec.attributes,
                                      dependencies=list(rec.dependencies or []), fleet=(rec.attributes or {}).get("fleet"),
                                      reasons=[f"cleanup: {item.summary}"], risks=["destroys a serving replica"]))
            if changes:
                plan = Plan(changes=changes, lineage=snap.lineage, serial=snap.serial,
                            config_digest=ws.config.digest, config_path=str(ws.config.root))
                result = ws.apply(plan, operation="cleanup")
                for item in idle:
                    if item.error:
                        continue
                    nid = f"delete:{item.address}"
                    item.removed = nid in result.done
                    item.error = None if item.removed else result.failed.get(nid, "skipped")
                    store.audit("cleanup-idle", address=item.address, who=who(),
                                details={"removed": item.removed, "error": item.error, "summary": item.summary})
    finally:
        store.close()
        if todo.providers is not None:
            todo.providers.close()
    return todo

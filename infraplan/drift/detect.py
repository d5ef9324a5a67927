"""One drift run without records: refresh and probe every replica, compare with state and config, list orphans."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from infraplan.drift.findings import KINDS, DriftReport, Evidence, Finding, now_iso
from infraplan.drift.orphans import orphan_findings
from infraplan.drift.probe import Probe, Prober
from infraplan.drift.settings import DriftSettings, idle_window
from infraplan.errors import InfraplanError
from infraplan.plan.refresh import Observation, record_key
from infraplan.providers.registry import ProviderSet

IN_FLIGHT = {"creating": "being created", "updating": "being updated", "deleting": "being deleted"}

# Replica attributes compared with what the real thing reports, and who reports them.
OBSERVED = {
    "model_source": "/model_info",
    "model_revision": "/server_info",  # SGLang reports the revision there only
    "served_name": "/server_info",
    "args": "/server_info",
    "accelerators": "provider",  # SkyPilot status (when a provider reports it)
    "cloud": "provider",
    "region": "provider",
    "spot": "provider",
}


@dataclass
class _Checked:
    rec: Any
    obs: Observation
    probe: Probe | None = None


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
        orphans, listed, errs = orphan_findings(snapshot, providers, {r.provider for r in replicas if r.provider}
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
            result = providers.get(rec.provider).read(rec.kind, rec.address, dict(rec.attributes))
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
            result = providers.get(rec.provider).read(rec.kind, rec.address, dict(attrs))
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
        route, why = (p.health_route, p.health) if p.health != "ok" else ("/health_generate", p.health_generate)
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

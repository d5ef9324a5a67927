"""Live figures per replica and per fleet over a sliding window of the servers' own metrics.

Every replica in state is scraped twice, `window` seconds apart, all at once; the window's
increases give requests/s, output tokens/s, error rate and the TTFT, TPOT, ITL and end-to-end
quantiles (SGLang's `bench_serving` definitions, from SGLang's histograms), and the second
scrape gives the gauges (running and queued requests, KV-cache usage, cache hit rate). A
replica that cannot be read is reported as such with why, never as zeros. $/hour is what
the last apply planned for the fleet; $ per 1M output tokens divides it by the tokens the
fleet really produced in the window.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from infraplan.errors import InfraplanError
from infraplan.models.kinds import ResourceKind
from infraplan.serving import metrics as m

#: quantiles shown, (figure, histogram, q)
QUANTILES = [(f"{name}_p{int(q * 100)}_ms", hist, q)
             for name, hist in (("ttft", m.TTFT), ("tpot", m.TPOT), ("itl", m.ITL), ("e2e", m.E2E))
             for q in (0.5, 0.95)]
MAX_PARALLEL = 64


@dataclass
class ReplicaStatus:
    """One replica's figures over the window (`readable` False: `error` says why, no figures)."""

    address: str
    endpoint: str | None
    readable: bool
    error: str | None = None
    figures: dict[str, float | None] = field(default_factory=dict)


@dataclass
class FleetStatus:
    """A fleet's figures over the readable replicas, and what it costs."""

    address: str
    replicas: list[ReplicaStatus]
    figures: dict[str, float | None] = field(default_factory=dict)
    hourly: float | None = None
    usd_per_1m_output_tokens: float | None = None

    @property
    def unreadable(self) -> int:
        return sum(1 for r in self.replicas if not r.readable)


@dataclass
class StatusReport:
    window_s: float
    fleets: list[FleetStatus]
    taken_at: str

    def to_json(self) -> dict[str, Any]:
        return {"format_version": "1.0", "window_s": self.window_s, "taken_at": self.taken_at,
                "fleets": [dict(asdict(f), unreadable=f.unreadable) for f in self.fleets]}


def figures(before: list[m.Metrics], after: list[m.Metrics], seconds: float) -> dict[str, float | None]:
    """The window's figures for a set of workers (one or a fleet's)."""
    out: dict[str, float | None] = {}
    requests = m.counter_increase(before, after, m.REQUESTS)
    aborted = m.counter_increase(before, after, m.ABORTED)
    out["requests_per_s"] = round(requests / seconds, 3)
    out["output_tokens_per_s"] = round(m.counter_increase(before, after, m.GEN_TOKENS) / seconds, 3)
    out["error_rate"] = round(aborted / requests, 4) if requests else None
    for name, hist, q in QUANTILES:
        v = m.histogram_quantile(q, m.bucket_increase(before, after, hist))
        out[name] = None if v is None else round(v * 1000.0, 2)
    for name, gauge in (("running", m.RUNNING), ("queued", m.QUEUED)):
        values = [m.gauge(a, gauge) for a in after]
        out[name] = None if all(v is None for v in values) else sum(v or 0.0 for v in values)
    for name, gauge in (("kv_cache_usage", m.TOKEN_USAGE), ("cache_hit_rate", m.CACHE_HIT_RATE)):
        values = [v for v in (m.gauge(a, gauge) for a in after) if v is not None]
        out[name] = round(sum(values) / len(values), 4) if values else None
    return out


def _scrape(client, url: str) -> tuple[m.Metrics | None, str | None]:
    """One replica's /metrics through the shared client (one connection pool for all of them)."""
    import httpx

    from infraplan.serving.http import status_error, transport_error
    from infraplan.serving.sglang_client import parse_metrics

    try:
        r = client.get(f"{url.rstrip('/')}/metrics")
        err = status_error(r.status_code, f"GET {url}/metrics")
        if err is not None:
            return None, str(err).splitlines()[0][:200]
        return parse_metrics(r.text), None
    except httpx.HTTPError as exc:
        return None, str(transport_error(exc, f"GET {url}/metrics")).splitlines()[0][:200]
    except (InfraplanError, ValueError) as exc:
        return None, str(exc).splitlines()[0][:200]


def collect(snapshot, prices: dict[str, float], *, window_s: float = 1.0, timeout: float = 2.0,
            fleets: list[str] | None = None) -> StatusReport:
    """Scrape every replica of `snapshot` (or of `fleets`) twice, `window_s` apart."""
    from infraplan.util.time import utc_now

    reps = [r for r in snapshot.resources if r.kind == ResourceKind.REPLICA and not r.deposed
            and (fleets is None or (r.attributes or {}).get("fleet") in fleets)]
    import httpx

    urls = [(r.attributes or {}).get("endpoint") for r in reps]
    width = max(1, min(MAX_PARALLEL, len(reps)))
    limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
    with httpx.Client(timeout=timeout, trust_env=False, limits=limits) as client, \
            ThreadPoolExecutor(max_workers=width) as pool:
        def scrape_all():
            return list(pool.map(lambda u: _scrape(client, u) if u else (None, "no endpoint in state"), urls))

        first = scrape_all()
        t0 = time.monotonic()
        time.sleep(window_s)
        second = scrape_all()
        seconds = max(window_s, time.monotonic() - t0)
    by_fleet: dict[str, list[tuple[ReplicaStatus, m.Metrics | None, m.Metrics | None]]] = {}
    for rec, url, (b, e1), (a, e2) in zip(reps, urls, first, second):
        fleet = (rec.attributes or {}).get("fleet") or rec.address.split("[")[0]
        if b is None or a is None:
            status = ReplicaStatus(rec.address, url, False, e1 or e2)
        else:
            status = ReplicaStatus(rec.address, url, True, figures=figures([b], [a], seconds))
        by_fleet.setdefault(fleet, []).append((status, b, a))
    out = []
    for fleet, rows in sorted(by_fleet.items()):
        readable = [(b, a) for s, b, a in rows if s.readable]
        fs = FleetStatus(fleet, [s for s, _, _ in rows], hourly=prices.get(fleet))
        if readable:
            fs.figures = figures([b for b, _ in readable], [a for _, a in readable], seconds)
            tokens_per_s = fs.figures.get("output_tokens_per_s") or 0.0
            if fs.hourly is not None and tokens_per_s > 0:
                fs.usd_per_1m_output_tokens = round(fs.hourly / (tokens_per_s * 3600.0) * 1e6, 4)
        out.append(fs)
    return StatusReport(round(seconds, 3), out, utc_now())


def latest_prices(history) -> dict[str, float]:
    """Each fleet's $/hour as the last successful apply planned it (`hourly_by_fleet` in history)."""
    for h in history:
        if h.status == "ok" and isinstance(h.summary, dict) and "hourly_by_fleet" in h.summary:
            return {k: float(v) for k, v in (h.summary.get("hourly_by_fleet") or {}).items() if v is not None}
    return {}


def prometheus_text(report: StatusReport) -> str:
    """The report as Prometheus exposition (one gauge family per figure, labelled by fleet and replica)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    reg = CollectorRegistry()
    up = Gauge("infraplan_replica_up", "1 when the replica's /metrics could be read this window",
               ["fleet", "replica"], registry=reg)
    gauges: dict[str, Gauge] = {}

    def put(name: str, labels: dict[str, str], value: float | None) -> None:
        if value is None:
            return
        if name not in gauges:
            gauges[name] = Gauge(f"infraplan_{name}", f"{name.replace('_', ' ')} over the status window",
                                 list(labels), registry=reg)
        gauges[name].labels(**labels).set(value)

    for f in report.fleets:
        for r in f.replicas:
            up.labels(fleet=f.address, replica=r.address).set(1 if r.readable else 0)
            for k, v in r.figures.items():
                put(f"replica_{k}", {"fleet": f.address, "replica": r.address}, v)
        for k, v in f.figures.items():
            put(f"fleet_{k}", {"fleet": f.address}, v)
        put("fleet_usd_per_hour", {"fleet": f.address}, f.hourly)
        put("fleet_usd_per_1m_output_tokens", {"fleet": f.address}, f.usd_per_1m_output_tokens)
    return generate_latest(reg).decode()

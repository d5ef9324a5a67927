"""Judge a new version against the still-running baseline from the servers' own `/metrics`.

Each side (canary, baseline) is a set of workers. Their Prometheus metrics (SGLang's
names) are scraped at the start and at the end of a window; the per-window increase of
each histogram bucket, summed over the side's workers, gives quantiles interpolated
within buckets exactly as Prometheus' ``histogram_quantile`` does, and the increase of the
request and aborted-request counters gives the error rate. Failures the servers never
count (an HTTP 500 before a request is admitted) are seen by the load this module sends
during the window, per side; the error rate judged is the larger of the two.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from infraplan.errors import InfraplanError

TTFT = "sglang:time_to_first_token_seconds"
ITL = "sglang:inter_token_latency_seconds"
E2E = "sglang:e2e_request_latency_seconds"
#: per-request time per output token, (finished - first token) / (tokens - 1): SGLang 0.5.23 exports it
TPOT = "sglang:request_time_per_output_token_seconds"
TPOT_0_4 = "sglang:time_per_output_token_seconds"  # SGLang 0.4.x's name for it; 0.5.6 exports neither
REQUESTS = "sglang:num_requests_total"
ABORTED = "sglang:num_aborted_requests_total"
GEN_TOKENS = "sglang:generation_tokens_total"

#: gate metric -> (histogram, quantile)
QUANTILE_METRICS = {
    "ttft_p50_ms": (TTFT, 0.50), "ttft_p95_ms": (TTFT, 0.95), "ttft_p99_ms": (TTFT, 0.99),
    "itl_p95_ms": (ITL, 0.95), "tpot_p95_ms": (TPOT, 0.95), "e2e_p95_ms": (E2E, 0.95),
}

Metrics = dict[str, list[Any]]  # sample name -> prometheus_client Samples (as SGLangClient.metrics())


# -- math ------------------------------------------------------------------------------


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile``: `buckets` are (upper bound, cumulative count).

    None when there are no observations. The highest finite bound is returned when the
    rank falls into the +Inf bucket; the first bucket interpolates from 0 (if its bound
    is positive), as Prometheus does.
    """
    if not buckets:
        return None
    b = sorted(buckets, key=lambda x: x[0])
    if not math.isinf(b[-1][0]):
        return None  # a histogram without +Inf is invalid for Prometheus too
    # counts must be monotonic; Prometheus fixes small violations the same way
    fixed, running = [], 0.0
    for le, c in b:
        running = max(running, c)
        fixed.append((le, running))
    total = fixed[-1][1]
    if total <= 0:
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    rank = q * total
    for i, (le, c) in enumerate(fixed):
        if c >= rank:
            break
    if math.isinf(le):
        return fixed[-2][0] if len(fixed) > 1 else None
    if i == 0:
        lower, prev = (0.0 if le > 0 else le), 0.0
        if le <= 0:
            return le
    else:
        lower, prev = fixed[i - 1]
    in_bucket = c - prev
    if in_bucket <= 0:
        return le
    return lower + (le - lower) * (rank - prev) / in_bucket


def _increase(before: float | None, after: float | None) -> float:
    """A counter's increase over a window; a reset (after < before) counts from zero."""
    if after is None:
        return 0.0
    if before is None or after < before:
        return after
    return after - before


def _values(metrics: Metrics, name: str) -> dict[tuple, float]:
    """Samples of `name` by their label set."""
    return {tuple(sorted(s.labels.items())): s.value for s in metrics.get(name, [])}


def bucket_increase(before: Iterable[Metrics], after: Iterable[Metrics], histogram: str) -> list[tuple[float, float]]:
    """Per-window bucket counts of `histogram` summed over workers (`before`/`after` pairwise)."""
    by_le: dict[float, float] = {}
    for b, a in zip(before, after):
        old, new = _values(b, histogram + "_bucket"), _values(a, histogram + "_bucket")
        for labels, value in new.items():
            le = float(dict(labels)["le"])
            by_le[le] = by_le.get(le, 0.0) + _increase(old.get(labels), value)
    return sorted(by_le.items())


def counter_increase(before: Iterable[Metrics], after: Iterable[Metrics], name: str) -> float:
    """Window increase of counter `name` summed over workers and label sets."""
    total = 0.0
    for b, a in zip(before, after):
        old, new = _values(b, name), _values(a, name)
        total += sum(_increase(old.get(k), v) for k, v in new.items())
    return total


def window_stats(before: Sequence[Metrics], after: Sequence[Metrics], seconds: float) -> dict[str, Any]:
    """Latency quantiles (ms), request counts, error rate and throughput of one side over a window."""
    out: dict[str, Any] = {}
    for metric, (hist, q) in QUANTILE_METRICS.items():
        v = histogram_quantile(q, bucket_increase(before, after, hist))
        if v is None and hist == TPOT:
            v = _tpot_fallback(q, before, after)
        out[metric] = None if v is None else round(v * 1000.0, 3)
    requests = counter_increase(before, after, REQUESTS)
    aborted = counter_increase(before, after, ABORTED)
    out["requests"] = requests
    out["aborted"] = aborted
    out["server_error_rate"] = (aborted / requests) if requests else None
    out["error_rate"] = out["server_error_rate"]
    out["gen_tokens_per_s"] = round(counter_increase(before, after, GEN_TOKENS) / seconds, 3) if seconds > 0 else None
    return out


def _has(metrics: Sequence[Metrics], histogram: str) -> bool:
    return any(histogram + "_bucket" in m for m in metrics)


def _tpot_fallback(q: float, before: Sequence[Metrics], after: Sequence[Metrics]) -> float | None:
    """TPOT where the servers do not export 0.5.23's histogram: 0.4.x's, else the inter-token
    latency (0.5.6 has only that; TPOT is the mean of a request's gaps). A server that exports
    the 0.5.23 histogram with nothing in it this window has no TPOT: that is not filled in."""
    if _has(after, TPOT):
        return None
    if _has(after, TPOT_0_4):
        return histogram_quantile(q, bucket_increase(before, after, TPOT_0_4))
    return histogram_quantile(q, bucket_increase(before, after, ITL))


def add_client_errors(stats: dict[str, Any], sent: int, failed: int) -> dict[str, Any]:
    """Fold failures the load saw into `stats` (error_rate: the larger of server and client rates)."""
    stats["client_requests"], stats["client_failures"] = sent, failed
    client = (failed / sent) if sent else None
    stats["client_error_rate"] = client
    rates = [r for r in (stats.get("server_error_rate"), client) if r is not None]
    stats["error_rate"] = max(rates) if rates else None
    return stats


# -- gates -----------------------------------------------------------------------------


@dataclass
class GateResult:
    """One gate judged: the canary's value, the bound it had to meet, and the baseline's."""

    metric: str
    passed: bool
    value: float | None
    limit: float | None
    baseline: float | None
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "passed": self.passed, "value": self.value, "limit": self.limit,
                "baseline": self.baseline, "why": self.why}


def judge(gates: Iterable[Any], canary: dict[str, Any], baseline: dict[str, Any] | None) -> list[GateResult]:
    """Judge `SloGate`s (metric, max, max_ratio) on window stats; no data fails a gate."""
    out = []
    for g in gates:
        value = canary.get(g.metric)
        base = (baseline or {}).get(g.metric)
        limits = []
        if g.max is not None:
            limits.append((g.max, f"<= {g.max:g}"))
        if g.max_ratio is not None:
            if base is None:
                out.append(GateResult(g.metric, False, value, None, None,
                                      f"no baseline value for {g.metric} to compare with"))
                continue
            limits.append((g.max_ratio * base, f"<= {g.max_ratio:g} x baseline {base:g}"))
        if value is None:
            out.append(GateResult(g.metric, False, None, min((x for x, _ in limits), default=None), base,
                                  f"no data for {g.metric} in the window"))
            continue
        if not limits:
            out.append(GateResult(g.metric, True, value, None, base, "no bound given"))
            continue
        limit, text = min(limits, key=lambda x: x[0])
        ok = value <= limit + 1e-12
        out.append(GateResult(g.metric, ok, value, round(limit, 6), base,
                              f"{g.metric} {value:g} {'meets' if ok else 'breaks'} {text}"))
    return out


# -- one analysis window against live workers -------------------------------------------


@dataclass
class AnalysisResult:
    """The verdict of one window, with the evidence behind it."""

    passed: bool
    gates: list[GateResult] = field(default_factory=list)
    canary: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    reason: str | None = None

    def evidence(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, "canary": self.canary, "baseline": self.baseline,
                "gates": [g.to_dict() for g in self.gates]}


Scraper = Callable[[str], Metrics]


def scrape(url: str, api_key: str | None = None) -> Metrics:
    """`/metrics` of one worker, parsed (SGLangClient.metrics)."""
    from infraplan.serving.sglang_client import SGLangClient

    with SGLangClient(url, api_key=api_key, timeout=5.0, retries=2) as c:
        return c.metrics()


def _load(urls: list[str], seconds: float, concurrency: int, model: str | None, api_key: str | None,
          stop: threading.Event) -> dict[str, tuple[int, int]]:
    """Bounded streaming load (infraplan bench) on each url for `seconds`; url -> (sent, failed)."""
    from infraplan.bench import run_bench

    results: dict[str, tuple[int, int]] = {}
    per = max(1, concurrency // max(1, len(urls)))

    def one(url: str) -> None:
        try:
            r = run_bench(url, model=model, concurrency=per, duration_s=seconds, prompt_tokens=8,
                          output_tokens=4, timeout_s=max(10.0, seconds * 2), api_key=api_key, stop=stop)
            results[url] = (len(r.records), len(r.failed))
        except InfraplanError:
            results[url] = (0, 0)

    threads = [threading.Thread(target=one, args=(u,), daemon=True) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def analyze(canary_urls: list[str], baseline_urls: list[str], spec: Any, *, model: str | None = None,
            api_key: str | None = None, stop: threading.Event | None = None,
            scraper: Scraper | None = None) -> AnalysisResult:
    """Run one window of `spec` (a RolloutAnalysis): scrape, load, wait, scrape, judge.

    With `spec.generate_load`, each side gets `load_concurrency` streaming requests in
    flight for the window (sent straight to its workers, so both versions are measured
    under the same load whatever the router does). Fails when the canary served fewer
    than `min_requests`.
    """
    stop = stop or threading.Event()
    scraper = scraper or (lambda u: scrape(u, api_key))
    urls = list(canary_urls) + list(baseline_urls)
    t0 = time.monotonic()
    before = [scraper(u) for u in urls]
    sent: dict[str, tuple[int, int]] = {}
    if spec.generate_load:
        sides = [list(canary_urls), list(baseline_urls)]
        results: list[dict] = [{}, {}]

        def side(i: int) -> None:
            results[i] = _load(sides[i], spec.window_s, spec.load_concurrency, model, api_key, stop)

        threads = [threading.Thread(target=side, args=(i,), daemon=True) for i in (0, 1) if sides[i]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            sent.update(r)
    else:
        stop.wait(spec.window_s)
    after = [scraper(u) for u in urls]
    seconds = time.monotonic() - t0
    n = len(canary_urls)
    canary = window_stats(before[:n], after[:n], seconds)
    baseline = window_stats(before[n:], after[n:], seconds) if baseline_urls else None

    def fold(stats: dict[str, Any], side: list[str]) -> None:
        if spec.generate_load:
            add_client_errors(stats, sum(sent.get(u, (0, 0))[0] for u in side),
                              sum(sent.get(u, (0, 0))[1] for u in side))

    fold(canary, list(canary_urls))
    if baseline is not None:
        fold(baseline, list(baseline_urls))
    served = max(canary["requests"], canary.get("client_requests") or 0)
    if served < spec.min_requests:
        return AnalysisResult(False, [], canary, baseline,
                              f"the new version served {served:g} requests in the window, fewer than "
                              f"min_requests {spec.min_requests}")
    gates = judge(spec.gates, canary, baseline)
    failed = [g for g in gates if not g.passed]
    return AnalysisResult(not failed, gates, canary, baseline, "; ".join(g.why for g in failed) or None)

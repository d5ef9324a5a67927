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

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from infraplan.errors import InfraplanError

from infraplan.serving.metrics import (  # noqa: F401 - the window math, here for the gates and their tests
    ABORTED, E2E, GEN_TOKENS, ITL, QUANTILE_METRICS, REQUESTS, TPOT, TPOT_0_4, TTFT, Metrics, bucket_increase,
    counter_increase, histogram_quantile, window_stats)


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

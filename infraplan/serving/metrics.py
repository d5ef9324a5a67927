"""Windows over SGLang's own Prometheus metrics: quantiles, counter increases, throughput.

A window is two scrapes of the same workers (`before`, `after`). The per-window increase of
each histogram bucket, summed over the workers, gives quantiles interpolated within buckets
exactly as Prometheus' ``histogram_quantile`` does; counters give rates. Names are SGLang
0.5.23's (with the 0.4.x/0.5.6 fallbacks noted). Used by rollout gates and `infraplan status`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

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


RUNNING = "sglang:num_running_reqs"
QUEUED = "sglang:num_queue_reqs"
TOKEN_USAGE = "sglang:token_usage"
CACHE_HIT_RATE = "sglang:cache_hit_rate"


def gauge(metrics: Metrics, name: str) -> float | None:
    """The sum of gauge `name` over its label sets (None when the server does not export it)."""
    samples = metrics.get(name)
    return None if not samples else float(sum(s.value for s in samples))

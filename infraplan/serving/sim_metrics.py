"""The simulator's Prometheus metrics: SGLang 0.5.23's names, types, label sets and buckets
(`srt/observability/metrics_collector.py`), in a registry of their own per simulator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# SGLang 0.5.23's default buckets (srt/observability/metrics_collector.py, TokenizerMetricsCollector).
TTFT_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
ITL_BUCKETS = [0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040,
               0.060, 0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.0, 2.0, 4.0, 6.0, 8.0]
E2E_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400,
               600, 1200, 1800, 2400]
TOKEN_COUNT_BUCKETS = [100, 300, 500, 700, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000,
                       12500, 15000, 17500, 20000, 22500, 25000, 27500, 30000, 35000, 40000, 60000, 80000,
                       100000, 200000, 300000, 400000, 600000, 800000, 1000000, 1100000]
GET_LOADS_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]


class SimMetrics:
    """SGLang 0.5.23's Prometheus metrics (same names, types, labels, buckets), in a private registry."""

    def __init__(self, served_name: str):
        prometheus_client.disable_created_metrics()  # SGLang runs multiprocess mode: no *_created
        self.registry = r = CollectorRegistry()
        # tokenizer_metric_labels() and the scheduler's labels without DP or priority scheduling
        self.labels = tok = {"model_name": served_name, "engine_type": "unified"}
        sched = {**tok, "tp_rank": "0", "pp_rank": "0", "moe_ep_rank": "0"}
        stream = [*tok, "is_streaming"]

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def hist(name: str, doc: str, labels: list[str], buckets: list[float]) -> Histogram:
            return Histogram(name, doc, labels, registry=r, buckets=buckets)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, list(sched), registry=r).labels(**sched)

        self.prompt_tokens = counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.", stream)
        self.generation_tokens = counter("sglang:generation_tokens_total", "Number of generation tokens processed.",
                                         stream)
        self.cached_tokens = counter("sglang:cached_tokens_total",
                                     "Number of cached prompt tokens by source (device/host/storage).",
                                     [*tok, "cache_source"])
        self.num_requests = counter("sglang:num_requests_total", "Number of requests processed.", stream)
        self.num_so_requests = counter("sglang:num_so_requests_total",
                                       "Number of structured output requests processed.", list(tok)).labels(**tok)
        self.num_aborted = counter("sglang:num_aborted_requests_total", "Number of requests aborted.",
                                   list(tok)).labels(**tok)
        self.prompt_tokens_hist = hist("sglang:prompt_tokens_histogram", "Histogram of prompt token length.",
                                       list(tok), TOKEN_COUNT_BUCKETS).labels(**tok)
        self.uncached_prompt_tokens_hist = hist("sglang:uncached_prompt_tokens_histogram",
                                                "Histogram of uncached (compute) prompt token length.", list(tok),
                                                TOKEN_COUNT_BUCKETS).labels(**tok)
        self.generation_tokens_hist = hist("sglang:generation_tokens_histogram",
                                           "Histogram of generation token length.", list(tok),
                                           TOKEN_COUNT_BUCKETS).labels(**tok)
        self.get_loads_duration = hist("sglang:get_loads_duration_seconds",
                                       "Time spent serving /v1/loads requests (seconds).", list(tok),
                                       GET_LOADS_BUCKETS).labels(**tok)
        self.ttft = hist("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                         stream, TTFT_BUCKETS)
        self.itl = hist("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                        list(tok), ITL_BUCKETS).labels(**tok)
        self.tpot = hist("sglang:request_time_per_output_token_seconds",
                         "Per-request TPOT in seconds: (finished_time - first_token_time) / (completion_tokens - 1).",
                         stream, ITL_BUCKETS)
        self.e2e = hist("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds",
                        stream, E2E_BUCKETS)
        self.num_running = gauge("sglang:num_running_reqs", "The number of running requests.")
        self.num_queue = gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.")
        self.num_used_tokens = gauge("sglang:num_used_tokens", "The number of used tokens.")
        self.token_usage = gauge("sglang:token_usage", "The token usage.")
        self.gen_throughput = gauge("sglang:gen_throughput", "The generation throughput (token/s).")
        self.cache_hit_rate = gauge("sglang:cache_hit_rate", "The prefix cache hit rate.")
        self.utilization = gauge("sglang:utilization", "The utilization.")
        self.max_total_num_tokens = gauge("sglang:max_total_num_tokens",
                                          "Maximum total number of tokens in the KV cache pool.")
        self.context_len = gauge("sglang:context_len", "Maximum context length.")
        # resolved on first use: a series appears in /metrics once a request of its kind ran, as in SGLang
        self._series: dict[bool, StreamSeries] = {}

    def stream_labels(self, stream: bool) -> dict[str, str]:
        return {**self.labels, "is_streaming": "true" if stream else "false"}

    def series(self, stream: bool) -> StreamSeries:
        """The `is_streaming` children of the per-request metrics, resolved once."""
        series = self._series.get(stream)
        if series is None:
            series = self._series[stream] = self._resolve(stream)
        return series

    def _resolve(self, stream: bool) -> StreamSeries:
        labels = self.stream_labels(stream)
        return StreamSeries(*(metric.labels(**labels) for metric in (
            self.num_requests, self.prompt_tokens, self.generation_tokens, self.ttft, self.tpot, self.e2e)))


@dataclass(frozen=True)
class StreamSeries:
    """One `is_streaming` value's children of the per-request metrics (`labels()` takes a lock and
    builds a key: too dear to repeat for every token of hundreds of streams)."""

    num_requests: Any
    prompt_tokens: Any
    generation_tokens: Any
    ttft: Any
    tpot: Any
    e2e: Any

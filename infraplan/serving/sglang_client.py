"""An httpx client for one running SGLang server, 0.5.6 to 0.5.23 (or infraplan's sim).

Failures map to infraplan's errors in one place (`infraplan.serving.http`):
refused connections, timeouts and HTTP 5xx raise `TransientProviderError`, which
the engine retries (`infraplan.util.retry`); a client made with ``retries=N`` for
a feature's own probes tries N times with the same policy. Other failures raise
`ProviderError`. Metric names are SGLang's own (0.5.23:
`sglang/srt/observability/metrics_collector.py`); every metric carries `model_name` and
`engine_type` labels, the per-request ones also `is_streaming`.

SGLang 0.5.23's `/health` and `/health_generate` each run a one-token generation and
sleep 1 s before they look for it, so they get that second on top of the client's
timeout; `/ready` answers at once (`ready_or_health` uses it where the server has it).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from infraplan.errors import ProviderError, TransientProviderError
from infraplan.serving.http import status_error, transport_error
from infraplan.util.retry import call_with_retries
from infraplan.util.redact import redact

#: how secrets in a server's own responses (/server_info) read once masked
REDACTED = "(sensitive)"

#: what SGLang's /health and /health_generate sleep before looking for their generation
HEALTH_GENERATION_S = 1.0

# TokenizerMetricsCollector (labels: model_name, engine_type; `is_streaming` where noted).
# Counters are exposed with `_total`.
TIME_TO_FIRST_TOKEN = "sglang:time_to_first_token_seconds"  # histogram, is_streaming
INTER_TOKEN_LATENCY = "sglang:inter_token_latency_seconds"  # histogram
E2E_REQUEST_LATENCY = "sglang:e2e_request_latency_seconds"  # histogram, is_streaming
#: per-request (finished - first token) / (completion tokens - 1); new in 0.5.23
REQUEST_TIME_PER_OUTPUT_TOKEN = "sglang:request_time_per_output_token_seconds"  # histogram, is_streaming
NUM_REQUESTS = "sglang:num_requests_total"  # counter, is_streaming (counted when a request finishes)
NUM_ABORTED_REQUESTS = "sglang:num_aborted_requests_total"  # counter
PROMPT_TOKENS = "sglang:prompt_tokens_total"  # counter, is_streaming
GENERATION_TOKENS = "sglang:generation_tokens_total"  # counter, is_streaming
CACHED_TOKENS = "sglang:cached_tokens_total"  # counter, cache_source
# SchedulerMetricsCollector (labels: model_name, engine_type, tp_rank, pp_rank, moe_ep_rank[, dp_rank]).
NUM_RUNNING_REQS = "sglang:num_running_reqs"  # gauge
NUM_QUEUE_REQS = "sglang:num_queue_reqs"  # gauge
NUM_USED_TOKENS = "sglang:num_used_tokens"  # gauge
TOKEN_USAGE = "sglang:token_usage"  # gauge
GEN_THROUGHPUT = "sglang:gen_throughput"  # gauge, tokens/s
CACHE_HIT_RATE = "sglang:cache_hit_rate"  # gauge
MODEL_NAME_LABEL = "model_name"

Metrics = dict[str, list[Sample]]


def metric_total(metrics: Metrics, sample_name: str, **labels: str) -> float | None:
    """Sum of the samples named `sample_name` whose labels include `labels`; None when absent."""
    found = [s.value for s in metrics.get(sample_name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(found) if found else None


def histogram_mean(metrics: Metrics, histogram: str, **labels: str) -> float | None:
    """Mean of a histogram (`_sum / _count`), or None when it has no observations."""
    total = metric_total(metrics, histogram + "_sum", **labels)
    count = metric_total(metrics, histogram + "_count", **labels)
    if not count or total is None:
        return None
    return total / count


def parse_metrics(text: str) -> Metrics:
    """Prometheus text -> samples grouped by sample name (e.g. `..._bucket`, `..._total`)."""
    out: Metrics = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append(sample)
    except ValueError as e:
        raise ProviderError(f"cannot parse Prometheus metrics: {e}") from e
    return out


def redact_server_info(info: dict[str, Any]) -> dict[str, Any]:
    """`info` with every key-, token- or secret-named field masked, at any depth (`api_key`,
    `admin_api_key`, also inside `internal_states`), and the secrets in `launch_command`
    (`--api-key X`): SGLang 0.5.23 returns all of them in clear."""
    return redact(info, marker=REDACTED)


class SGLangClient:
    """Talks to one SGLang server's HTTP API."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = 1,
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.retries = max(1, retries)
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    # -- plumbing -----------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SGLangClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request; transport errors and 5xx become TransientProviderError."""
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise transport_error(e, f"{method} {self.base_url}{path}") from e
        err = status_error(resp.status_code, f"{method} {self.base_url}{path}", _error_text(resp))
        if isinstance(err, TransientProviderError):
            raise err
        return resp

    def _request(self, method: str, path: str, *, ok_404: bool = False, **kw: Any) -> httpx.Response:
        """A request retried on transient errors; 4xx raise ProviderError (404 -> ResourceNotFound)."""
        resp = call_with_retries(lambda: self._send(method, path, **kw), retry_on=TransientProviderError,
                                 attempts=self.retries, what=f"{method} {self.base_url}{path}",
                                 wait_multiplier_s=0.05)
        if resp.status_code == 404 and ok_404:
            return resp
        err = status_error(resp.status_code, f"{method} {self.base_url}{path}",
                           "" if resp.status_code in (401, 403, 404) else _error_text(resp))
        if err is not None:
            raise err
        return resp

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._request(method, path, **kw)
        try:
            return resp.json()
        except ValueError as e:
            raise ProviderError(f"{method} {self.base_url}{path}: response is not JSON") from e

    def _get_with_fallback(self, path: str, old_path: str) -> dict[str, Any]:
        resp = self._request("GET", path, ok_404=True)
        if resp.status_code == 404:  # SGLang before /model_info and /server_info existed
            resp = self._request("GET", old_path)
        try:
            return resp.json()
        except ValueError as e:
            raise ProviderError(f"GET {self.base_url}{path}: response is not JSON") from e

    def _probe(self, path: str, *, generates: bool = False) -> int | None:
        """The status of GET `path`, None when it could not be asked; a generating probe gets 1 s more."""
        timeout = self.timeout + (HEALTH_GENERATION_S if generates else 0.0)
        try:
            return self._http.get(path, timeout=timeout).status_code
        except httpx.HTTPError:
            return None

    # -- routes -------------------------------------------------------------
    def health(self) -> bool:
        """`/health` answers 200 (503 while starting or shutting down); never raises.

        SGLang 0.5.23 runs a one-token generation here and answers after about a second.
        """
        return self._probe("/health", generates=True) == 200

    def health_generate(self) -> bool:
        """`/health_generate` answers 200 (SGLang runs a one-token generation); never raises."""
        return self._probe("/health_generate", generates=True) == 200

    def ready(self) -> bool | None:
        """`/ready` answers 200 (at once, no generation, no key); None when the server has no
        `/ready` (404: SGLang before 0.5.23); never raises."""
        status = self._probe("/ready")
        return None if status == 404 else status == 200

    def ready_or_health(self) -> bool:
        """Ready to take requests: `/ready` where the server has it, else `/health`; never raises."""
        ready = self.ready()
        return self.health() if ready is None else ready

    def model_info(self) -> dict[str, Any]:
        """`/model_info` (or the older `/get_model_info`): model_path, weight_version, ..."""
        return self._get_with_fallback("/model_info", "/get_model_info")

    def server_info(self) -> dict[str, Any]:
        """`/server_info` (or `/get_server_info`): the server args and state, api key redacted."""
        return redact_server_info(self._get_with_fallback("/server_info", "/get_server_info"))

    def models(self) -> dict[str, Any]:
        """`/v1/models`: `{"object": "list", "data": [{"id": served name, ...}]}`."""
        return self._json("GET", "/v1/models")

    def loads(self, include: str | None = None) -> dict[str, Any]:
        """`/v1/loads` (SGLang 0.5.23; `/get_load` is gone): `{"timestamp", "version",
        "accelerator", "num_accelerators", "loads": [one per DP rank: num_running_reqs,
        num_waiting_reqs, num_used_tokens, token_usage, ..., "memory", "queues", ...]}`.
        `include` picks sections (`core,memory,queues`)."""
        return self._json("GET", "/v1/loads", params={"include": include} if include else None)

    def revision(self) -> str | None:
        """The model revision the server was started with: `/model_info` if it says (the sim did),
        else `/server_info` (SGLang reports it only there)."""
        rev = self.model_info().get("revision")
        return rev if rev else self.server_info().get("revision")

    def metrics(self) -> Metrics:
        """`/metrics` parsed: sample name -> samples (needs `--enable-metrics` on SGLang)."""
        return parse_metrics(self._request("GET", "/metrics").text)

    def generate(self, text: str, max_new_tokens: int = 16, **sampling_params: Any) -> dict[str, Any]:
        """Native `/generate`: `{"text", "output_ids", "meta_info": {...}}`."""
        body = {"text": text, "sampling_params": {"max_new_tokens": max_new_tokens, **sampling_params}}
        return self._json("POST", "/generate", json=body)

    def generate_stream(self, text: str, max_new_tokens: int = 16, **sampling_params: Any) -> Iterator[dict[str, Any]]:
        """Native `/generate` with `stream: true`: yields each `data:` object until `[DONE]`."""
        body = {"text": text, "sampling_params": {"max_new_tokens": max_new_tokens, **sampling_params}, "stream": True}
        yield from self._stream("/generate", body)

    def completion(self, prompt: str, *, max_tokens: int = 16, model: str | None = None, **extra: Any) -> dict[str, Any]:
        """OpenAI `/v1/completions` (non-streaming)."""
        body = {"prompt": prompt, "max_tokens": max_tokens, **extra}
        if model:
            body["model"] = model
        return self._json("POST", "/v1/completions", json=body)

    def chat(self, messages: list[dict[str, Any]], *, max_tokens: int = 16, model: str | None = None,
             **extra: Any) -> dict[str, Any]:
        """OpenAI `/v1/chat/completions` (non-streaming)."""
        body = {"messages": messages, "max_tokens": max_tokens, **extra}
        if model:
            body["model"] = model
        return self._json("POST", "/v1/chat/completions", json=body)

    def chat_stream(self, messages: list[dict[str, Any]], *, max_tokens: int = 16, model: str | None = None,
                    include_usage: bool = True) -> Iterator[dict[str, Any]]:
        """OpenAI `/v1/chat/completions` with `stream: true`: yields each chunk."""
        body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "stream": True,
                                "stream_options": {"include_usage": include_usage}}
        if model:
            body["model"] = model
        yield from self._stream("/v1/chat/completions", body)

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        # No retry once streaming: a replay could duplicate output already consumed.
        try:
            with self._http.stream("POST", path, json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise status_error(resp.status_code, f"POST {self.base_url}{path}", _error_text(resp))
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        yield json.loads(data)
                    except json.JSONDecodeError as e:
                        raise ProviderError(f"POST {self.base_url}{path}: bad stream event {data[:80]!r}") from e
        except httpx.HTTPError as e:
            raise transport_error(e, f"POST {self.base_url}{path}") from e


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:200]
        return str(err)[:200]
    return str(body)[:200]

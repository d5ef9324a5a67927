"""infraplan sim: a small server that speaks SGLang 0.5.23's HTTP API. It is NOT inference.

It answers SGLang's routes with SGLang's JSON shapes, read from the sglang-0.5.23 wheel
(`sglang/srt/entrypoints/http_server.py`, `.../v1_loads.py`, `.../openai/protocol.py`
and `sse_utils.py`, `srt/managers/tokenizer_manager.py`, `srt/managers/load_snapshot.py`,
`srt/utils/auth.py`, `srt/observability/metrics_collector.py`), so the local provider,
health checks, rollouts and dashboards can be exercised without a GPU:

* `/ready` answers at once (no generation); `/health` and `/health_generate` run a
  one-token generation and, like SGLang, sleep 1 s (`--health-delay-s`) before they look
  for its answer, then answer 200 (503 at once while starting).
* `/model_info`, `/server_info` (every 0.5.23 ServerArgs field, `launch_command`,
  `internal_states`; the api keys in clear, as SGLang returns them), `/v1/models`,
  `/v1/loads` (`/get_load` is gone in 0.5.23 and answers 404), `/flush_cache`, `/ping`.
* `--api-key` / `--admin-api-key` (given in `--server-args-json`) are enforced as
  SGLang's auth middleware does: /health*, /ready* and /metrics* are always open; other
  routes need the api key (401 `{"error": "Unauthorized"}`); admin routes (`/flush_cache`)
  need the admin key when one is set, else the api key.
* Malformed bodies are answered as SGLang answers them (`sim_requests`): a body of the wrong
  shape, invalid JSON, non-UTF-8 or nested too deep is a 400 in SGLang's error shapes, a
  `Content-Length` that is no number uvicorn's plain-text 400; a body over 64 MiB is a 413.
  A connection idle for 5 s (uvicorn's keep-alive timeout) is closed, freeing its thread.
* Text is deterministic filler (seeded by `--seed` and the prompt), emitted after
  `--ttft-ms` and then every `--tpot-ms`, really sleeping, so the latency metrics it
  exports under SGLang 0.5.23's names and labels (`model_name`, `engine_type`,
  `is_streaming`, ...) are real measurements of the simulated timing.

Every identity field says `infraplan-sim` (and model_info/server_info add `engine`,
`instance_id`, `simulated`). `/metrics` is always served (SGLang needs --enable-metrics).
`--port 0` binds a free port; the startup line names it.

    python -m infraplan.serving.sim --port 30000 --model-path org/name \
        --revision main --served-model-name name [--ttft-ms 20] [--tpot-ms 5]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import secrets
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from infraplan.errors import ProviderError
from infraplan.serving.sglang_args import model_path_from_source
from infraplan.serving.sim_requests import (MAX_BODY_BYTES, UNFRAMED, ChatCompletionRequest, CompletionRequest,
                                            GenerateRequest, Rejected, checked, http_error, parse_json)

ENGINE = "infraplan-sim"
SGLANG_API_VERSION = "0.5.23"  # the SGLang release whose HTTP API this mimics
DEFAULT_CONTEXT_LENGTH = 4096
DEFAULT_MODEL_NAME = "default"  # SGLang's OpenAI requests without `model` (openai/protocol.py)
#: SGLang's /health and /health_generate sleep this long before looking for the generation's answer
HEALTH_SLEEP_S = 1.0
#: seconds a connection may sit idle (between requests, or mid-request) before it is closed:
#: uvicorn's `timeout_keep_alive` default, so an idle client does not hold a thread forever
IDLE_TIMEOUT_S = 5.0
VOCAB = (
    "the a of to and in plan apply fleet replica model server token graph state drift "
    "node edge route queue batch cache prefix decode prefill latency budget region zone "
    "simulated text is not inference only filler words for testing the http contract"
).split()
SERVER_ARGS_FIELDS = Path(__file__).with_name("sim_server_args.json")

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
#: the sections /v1/loads accepts in `include` (srt/managers/load_snapshot.py, LoadSnapshot.VALID_SECTIONS)
LOAD_SECTIONS = frozenset({"core", "memory", "spec", "lora", "disagg", "queues", "all"})


class AuthLevel(str, Enum):
    """SGLang's per-route auth level (srt/utils/auth.py)."""

    NORMAL = "normal"
    ADMIN_OPTIONAL = "admin_optional"


def _bearer_ok(header: str | None, expected: str) -> bool:
    if not header:
        return False
    parts = header.split(" ", 1)
    return len(parts) == 2 and parts[0].lower() == "bearer" and secrets.compare_digest(parts[1], expected)


def auth_status(method: str, path: str, header: str | None, api_key: str | None, admin_api_key: str | None,
                level: AuthLevel) -> int | None:
    """None when allowed, else the HTTP status: SGLang 0.5.23's `decide_request_auth`."""
    if method == "OPTIONS" or path.startswith(("/health", "/ready", "/metrics")):
        return None
    if level is AuthLevel.ADMIN_OPTIONAL:
        key = admin_api_key or api_key
    else:
        key = api_key
    if key and not _bearer_ok(header, key):
        return 401
    return None


@dataclass
class SimConfig:
    """What the simulator was started with."""

    model_path: str
    served_model_name: str
    revision: str | None = None
    host: str = "127.0.0.1"
    port: int = 30000
    ttft_ms: float = 20.0
    tpot_ms: float = 5.0
    error_rate: float = 0.0
    startup_s: float = 0.0
    #: what SGLang's /health and /health_generate sleep before they look for the generation
    health_delay_s: float = HEALTH_SLEEP_S
    seed: int = 0
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    server_args: dict[str, Any] = field(default_factory=dict)
    idle_timeout_s: float = IDLE_TIMEOUT_S  # a connection idle (or stalled mid-request) this long is closed


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

    def stream_labels(self, stream: bool) -> dict[str, str]:
        return {**self.labels, "is_streaming": "true" if stream else "false"}


@functools.cache
def _field_defaults() -> dict[str, Any]:
    """SGLang 0.5.23's ServerArgs fields and declared defaults (sim_server_args.json)."""
    return json.loads(SERVER_ARGS_FIELDS.read_text(encoding="utf-8"))["fields"]


def _cli_flag(name: str, value: Any) -> list[str]:
    """`--name value` as SGLang's argparse takes it (flags bare, lists as several values)."""
    flag = "--" + name.replace("_", "-")
    if value is None or value is False:
        return []
    if value is True:
        return [flag]
    if isinstance(value, (list, tuple)):
        return [flag, *map(str, value)]
    if isinstance(value, dict):
        return [flag, json.dumps(value)]
    return [flag, str(value)]


class Simulator:
    """The state behind the HTTP routes: identity, timing, deterministic text, metrics."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.started = time.monotonic()
        self.startup_wall = time.time()
        self.metrics = SimMetrics(cfg.served_model_name)
        self._lock = threading.Lock()
        self._error_rng = random.Random(cfg.seed)
        self._running = 0
        self._tokens_in_flight = 0
        self._recent: list[tuple[float, int]] = []  # (time, tokens) for gen_throughput
        self.context_length = int(cfg.server_args.get("context_length") or DEFAULT_CONTEXT_LENGTH)
        self.max_total_num_tokens = self.context_length * 4
        self.weight_version = str(cfg.server_args.get("weight_version") or "default")
        self.metrics.max_total_num_tokens.set(self.max_total_num_tokens)
        self.metrics.context_len.set(self.context_length)

    # -- identity -----------------------------------------------------------
    def ready(self) -> bool:
        return time.monotonic() - self.started >= self.cfg.startup_s

    @property
    def api_key(self) -> str | None:
        return self.cfg.server_args.get("api_key") or None

    @property
    def admin_api_key(self) -> str | None:
        return self.cfg.server_args.get("admin_api_key") or None

    def server_args(self) -> dict[str, Any]:
        """Server args as SGLang 0.5.23's `ServerArgs.resolved_dict()` names them."""
        c = self.cfg
        base = {
            "model_path": c.model_path, "tokenizer_path": c.model_path, "revision": c.revision,
            "served_model_name": c.served_model_name, "host": c.host, "port": c.port,
            "context_length": self.context_length,
        }
        return {**_field_defaults(), **base, **c.server_args}

    def launch_command(self) -> str:
        """What SGLang reports as `launch_command`: its argv after the program, secrets left in."""
        c = self.cfg
        argv = ["--model-path", c.model_path]
        argv += ["--revision", c.revision] if c.revision else []
        argv += ["--served-model-name", c.served_model_name, "--host", c.host, "--port", str(c.port)]
        for name, value in c.server_args.items():
            argv += _cli_flag(name, value)
        return " ".join(argv)

    def identity(self) -> dict[str, Any]:
        return {"engine": ENGINE, "instance_id": self.cfg.instance_id, "simulated": True}

    def model_info(self) -> dict[str, Any]:
        """`/model_info` (http_server.py::model_info): no `revision` here in SGLang; see /server_info."""
        args = self.server_args()
        return {
            "model_path": self.cfg.model_path,
            "served_model_name": self.cfg.served_model_name,
            "tokenizer_path": args["tokenizer_path"],
            "is_generation": True,
            "preferred_sampling_params": args.get("preferred_sampling_params"),
            "weight_version": self.weight_version,
            "load_format": args.get("load_format"),
            "reasoning_parser": args.get("reasoning_parser"),
            "tool_call_parser": args.get("tool_call_parser"),
            "disaggregation_mode": args.get("disaggregation_mode"),
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": ENGINE,
            "architectures": ["InfraplanSimulator"],
            **self.identity(),
        }

    def _memory_usage(self) -> dict[str, Any]:
        graph = dict.fromkeys(("prefill", "decode", "target_verify", "draft_prefill", "draft_decode",
                               "draft_extend"), 0.0)
        return {"weight": 0.0, "kvcache": 0.0, "startup_available": 0.0, "token_capacity": self.max_total_num_tokens,
                "token_capacity_swa": None, "graph": graph}

    def server_info(self) -> dict[str, Any]:
        """`/server_info` (http_server.py::server_info via utils/common.py::build_server_info)."""
        with self._lock:
            throughput = self._throughput(time.monotonic())
        args = self.server_args()
        internal = {
            **args,
            "world_size": 1,
            "startup_time": self.startup_wall,
            "effective_max_running_requests_per_dp": args.get("max_running_requests") or 2048,
            "last_gen_throughput": throughput,
            "memory_usage": self._memory_usage(),
        }
        internal.pop("custom_sigquit_handler", None)
        return {
            **args,
            "launch_command": self.launch_command(),
            "status": "ready" if self.ready() else "starting",
            "max_total_num_tokens": self.max_total_num_tokens,
            "max_req_input_len": self.context_length - 1,
            "startup_time": self.startup_wall,
            "hicache_object_layout": None,
            "kv_events": None,
            "internal_states": [internal],
            "version": f"{ENGINE} (SGLang {SGLANG_API_VERSION} API)",
            "frontend": "python",
            **self.identity(),
        }

    def model_card(self) -> dict[str, Any]:
        name = self.cfg.served_model_name
        return {"id": name, "object": "model", "created": int(time.time()), "owned_by": ENGINE,
                "root": name, "parent": None, "max_model_len": self.context_length}

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self.model_card()]}

    def loads(self, include: set[str] | None) -> dict[str, Any]:
        """`/v1/loads` (entrypoints/v1_loads.py, LoadSnapshot.to_dict), one DP rank."""
        with self._lock:
            running, used = self._running, self._tokens_in_flight
            throughput = self._throughput(time.monotonic())
        usage = round(used / self.max_total_num_tokens, 4)
        load: dict[str, Any] = {
            "timestamp": time.time(), "dp_rank": 0, "num_running_reqs": running, "num_waiting_reqs": 0,
            "num_waiting_uncached_tokens": 0, "num_used_tokens": used, "num_total_tokens": used,
            "num_active_tokens": used, "num_prealloc_ready_tokens": 0,
            "max_total_num_tokens": self.max_total_num_tokens,
            "max_running_requests": int(self.server_args().get("max_running_requests") or 2048),
            "token_usage": usage, "gen_throughput": throughput, "cache_hit_rate": 0.0, "utilization": usage,
            "total_prefill_uncached_tokens": 0, "total_prefill_busy_us": 0, "decode_moments": None,
        }
        sections = {
            "memory": ("memory", {"weight_gb": 0.0, "kv_cache_gb": 0.0, "graph_gb": 0.0,
                                  "token_capacity": self.max_total_num_tokens}),
            "disagg": ("disaggregation", {"mode": "null", "prefill_bootstrap_queue_reqs": 0,
                                          "prefill_inflight_queue_reqs": 0, "decode_prealloc_queue_reqs": 0,
                                          "decode_transfer_queue_reqs": 0, "decode_retracted_queue_reqs": 0,
                                          "kv_transfer_speed_gb_s": 0.0, "kv_transfer_latency_ms": 0.0}),
            "queues": ("queues", {"waiting": 0, "grammar": 0, "paused": 0, "retracted": 0, "prealloc_ready": 0}),
        }
        if include != {"core"}:
            for name, (key, value) in sections.items():
                if include is None or "all" in include or name in include:
                    load[key] = value
        return {"timestamp": datetime.now(timezone.utc).isoformat(), "version": SGLANG_API_VERSION,
                "accelerator": None, "num_accelerators": 1, "loads": [load]}

    # -- generation ---------------------------------------------------------
    def draw_failure(self, stream: bool = False) -> bool:
        """Whether this request fails (`--error-rate`); a failure counts as an aborted request."""
        with self._lock:
            failed = self._error_rng.random() < self.cfg.error_rate
        if failed:  # SGLang counts an aborted request in both counters, so the error rate is aborted / requests
            self.metrics.num_requests.labels(**self.metrics.stream_labels(stream)).inc()
            self.metrics.num_aborted.inc()
        return failed

    def health_wait(self) -> None:
        """How long SGLang's health check takes: 1 s sleeps until the one-token generation answered."""
        step = self.cfg.health_delay_s
        if step <= 0:
            return
        first_token_s = self.cfg.ttft_ms / 1000.0
        time.sleep(step * max(1, math.ceil(first_token_s / step - 1e-9)))

    def _throughput(self, now: float) -> float:
        self._recent = [(t, n) for t, n in self._recent if now - t <= 5.0]
        return round(sum(n for _, n in self._recent) / 5.0, 2)

    def tokens(self, prompt: str, n: int) -> list[tuple[int, str]]:
        """`n` deterministic (token id, text piece) pairs for this seed and prompt."""
        rng = random.Random(f"{self.cfg.seed}\x00{prompt}")
        out = []
        for i in range(n):
            k = rng.randrange(len(VOCAB))
            out.append((1000 + k, VOCAB[k] if i == 0 else " " + VOCAB[k]))
        return out

    def run(self, prompt: str, prompt_tokens: int, max_new_tokens: int, *, stream: bool = False,
            timing: dict[str, float] | None = None) -> Iterator[tuple[int, str]]:
        """Yield tokens at the simulated pace; records SGLang's metrics when the request finishes.

        `timing`, when given, receives `created`, `first_token` and `finished` (time.time()).
        """
        m = self.metrics
        start = time.monotonic()
        wall0 = time.time()
        if timing is not None:
            timing["created"] = wall0
        with self._lock:
            self._running += 1
            self._tokens_in_flight += prompt_tokens
            m.num_running.set(self._running)
            m.num_used_tokens.set(self._tokens_in_flight)
        emitted, finished = 0, False
        first = last = start
        try:
            for i, tok in enumerate(self.tokens(prompt, max_new_tokens)):
                due = start + (self.cfg.ttft_ms + i * self.cfg.tpot_ms) / 1000.0
                time.sleep(max(0.0, due - time.monotonic()))
                now = time.monotonic()
                if i == 0:
                    first = now
                    m.ttft.labels(**m.stream_labels(stream)).observe(now - start)
                    if timing is not None:
                        timing["first_token"] = wall0 + (now - start)
                else:
                    m.itl.observe(now - last)
                last = now
                emitted += 1
                with self._lock:
                    self._tokens_in_flight += 1
                    self._recent.append((now, 1))
                yield tok
            finished = True
        except GeneratorExit:
            m.num_aborted.inc()
            raise
        finally:
            end = time.monotonic()
            if timing is not None:
                timing["finished"] = wall0 + (end - start)
            labels = m.stream_labels(stream)
            m.num_requests.labels(**labels).inc()
            m.prompt_tokens.labels(**labels).inc(prompt_tokens)
            m.generation_tokens.labels(**labels).inc(emitted)
            m.e2e.labels(**labels).observe(end - start)
            if finished and emitted >= 2 and last > first:  # stop/length finishes only, as SGLang
                m.tpot.labels(**labels).observe((last - first) / (emitted - 1))
            m.prompt_tokens_hist.observe(prompt_tokens)
            m.uncached_prompt_tokens_hist.observe(prompt_tokens)
            m.generation_tokens_hist.observe(emitted)
            with self._lock:
                self._running -= 1
                self._tokens_in_flight -= prompt_tokens + emitted
                m.num_running.set(self._running)
                m.num_used_tokens.set(self._tokens_in_flight)
                m.token_usage.set(round(self._tokens_in_flight / self.max_total_num_tokens, 4))
                m.gen_throughput.set(self._throughput(time.monotonic()))


class BadRequest(Exception):
    """The request cannot be served as sent (answered with HTTP 400)."""


def count_tokens(text: str) -> int:
    """A crude stand-in for a tokenizer: whitespace-separated words, at least one."""
    return max(1, len(text.split()))


def _chat_prompt(messages: list[dict[str, Any]]) -> str:
    parts = []
    for msg in messages or []:
        content = msg.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text") or "" for p in content if isinstance(p, dict))
        parts.append(f"{msg.get('role', 'user')}: {content or ''}")
    return "\n".join(parts)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """`UsageInfo` (openai/protocol.py) as UsageProcessor fills it without reasoning or cache report."""
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens, "prompt_tokens_details": None, "reasoning_tokens": 0,
            "completion_tokens_details": None}


class Handler(BaseHTTPRequestHandler):
    """Routes of SGLang's http_server, answered by the Simulator."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid 40 ms delayed-ACK stalls
    timeout = IDLE_TIMEOUT_S  # on the socket: an idle or stalled connection is closed, its thread freed
    _responded = False  # whether this request's status line went out (a late error cannot be sent then)
    server_version = f"{ENGINE}/{SGLANG_API_VERSION}"
    sim: Simulator  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet access log
        pass

    # -- plumbing -----------------------------------------------------------
    def send_response(self, code: int, message: str | None = None) -> None:
        self._responded = True
        super().send_response(code, message)

    def _send_json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, body: Any) -> None:
        self._chunk(b"data: " + (body if isinstance(body, bytes) else json.dumps(body).encode()) + b"\n\n")

    def _end_stream(self) -> None:
        self._event(b"[DONE]")
        self._chunk(b"")

    def _body(self) -> Any:
        """The request body as JSON, read whole so the connection stays usable; `Rejected` when it
        cannot be framed, is too large or cannot be parsed (answered as SGLang answers it)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raw = self._read_chunked()  # smg streams the bodies it will not retry (--disable-retries)
            if raw is None:
                raise Rejected(400, UNFRAMED, close=True)
        else:
            header = (self.headers.get("Content-Length") or "0").strip()
            if not header.isdigit():
                raise Rejected(400, UNFRAMED, close=True)
            length = int(header)
            if length > MAX_BODY_BYTES:
                raise http_error(413, f"request body of {length} bytes is over the limit of {MAX_BODY_BYTES}",
                                 close=True)
            try:
                raw = self.rfile.read(length) if length else b""
            except TimeoutError:
                raw = b""
            if len(raw) < length:  # the client stopped sending (or stalled past IDLE_TIMEOUT_S)
                raise http_error(400, f"request body ended before its Content-Length of {length} bytes",
                                 close=True)
        return parse_json(raw)

    def _read_chunked(self) -> bytes | None:
        """A chunked request body, read to its end so the connection stays usable; None if malformed."""
        parts: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            total += max(size, 0)
            if total > MAX_BODY_BYTES:
                raise http_error(413, f"request body is over the limit of {MAX_BODY_BYTES} bytes", close=True)
            if size < 0:
                self.close_connection = True
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):  # trailer fields
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF that ends the chunk

    def _drain(self) -> None:
        """Read and drop a body no route looks at (a malformed one only costs the connection)."""
        try:
            self._body()
        except Rejected as r:
            self.close_connection = self.close_connection or r.close

    def _reject(self, r: Rejected) -> None:
        if r.close:
            self.close_connection = True
        if isinstance(r.body, str):
            self._send_text(r.body, r.status)
        else:
            self._send_json(r.body, r.status)

    def _openai_error(self, status: int, message: str, kind: str) -> None:
        self._send_json({"object": "error", "message": message, "type": kind, "param": None, "code": status}, status)

    # -- dispatch -----------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def _routes(self) -> dict[str, tuple[frozenset[str], AuthLevel, Callable[[], None]]]:
        """path -> (methods, auth level, handler), as http_server.py declares them."""
        get = frozenset({"GET"})
        sim = self.sim
        post = frozenset({"POST", "PUT"})
        normal, admin = AuthLevel.NORMAL, AuthLevel.ADMIN_OPTIONAL
        return {
            "/ready": (get, normal, self._ready),
            "/health": (get, normal, self._health),
            "/health_generate": (get, normal, self._health),
            "/ping": (get, normal, self._ready),
            "/model_info": (get, normal, lambda: self._send_json(sim.model_info())),
            "/get_model_info": (get, normal, lambda: self._send_json(sim.model_info())),
            "/server_info": (get, normal, lambda: self._send_json(sim.server_info())),
            "/get_server_info": (get, normal, lambda: self._send_json(sim.server_info())),
            "/v1/models": (get, normal, lambda: self._send_json(sim.models())),
            "/v1/loads": (get, normal, self._loads),
            "/metrics": (get, normal, self._metrics),
            "/flush_cache": (frozenset({"GET", "POST"}), admin, self._flush_cache),
            "/generate": (post, normal, lambda: self._generation(self._generate, GenerateRequest)),
            "/v1/completions": (frozenset({"POST"}), normal,
                                lambda: self._generation(self._completions, CompletionRequest)),
            "/v1/chat/completions": (frozenset({"POST"}), normal,
                                     lambda: self._generation(self._chat, ChatCompletionRequest)),
        }

    def _dispatch(self, method: str) -> None:
        try:
            self._route(method)
        except Rejected as r:
            self._reject(r)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - as Starlette: a 500, never a dropped connection
            self.close_connection = True
            if not self._responded:
                self._send_text("Internal Server Error", 500)

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        routes = self._routes()
        route = routes.get(path)
        if route is None and path.startswith("/v1/models/"):
            route = (frozenset({"GET"}), AuthLevel.NORMAL, lambda: self._model(path.removeprefix("/v1/models/")))
        level = route[1] if route is not None else AuthLevel.NORMAL
        denied = auth_status(method, path, self.headers.get("Authorization"), self.sim.api_key,
                             self.sim.admin_api_key, level)
        if denied is not None:
            if method != "GET":
                self._drain()
            return self._send_json({"error": "Unauthorized"}, denied)
        if route is None or method not in route[0]:
            if method != "GET":
                self._drain()
            if route is None:
                return self._send_json({"detail": "Not Found"}, 404)
            return self._send_json({"detail": "Method Not Allowed"}, 405)
        route[2]()

    def _generation(self, handler: Callable[[dict[str, Any]], None], model: type) -> None:
        body = checked(model, self._body())
        if not self.sim.ready():
            return self._openai_error(503, "the simulator is still starting (--startup-s)", "ServiceUnavailable")
        try:
            handler(body)
        except BadRequest as e:
            self._openai_error(400, str(e), "BadRequestError")

    def _max_tokens(self, value: Any, default: int) -> int:
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= self.sim.context_length:
            raise BadRequest(f"max tokens must be an integer between 0 and {self.sim.context_length}, got {value!r}")
        return value

    def _query(self) -> dict[str, str]:
        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        return {k: v[-1] for k, v in parse_qs(query).items()}

    # -- routes -------------------------------------------------------------
    def _health(self) -> None:
        """`/health` and `/health_generate`: 503 at once while starting, else a one-token generation."""
        if not self.sim.ready():
            return self._send_empty(503)
        self.sim.health_wait()
        self._send_empty(200)

    def _ready(self) -> None:
        """`/ready` (and `/ping`): at once, no generation."""
        self._send_empty(200 if self.sim.ready() else 503)

    def _model(self, name: str) -> None:
        if name != self.sim.cfg.served_model_name:
            return self._send_json({"error": {"message": f"The model '{name}' does not exist",
                                              "type": "invalid_request_error", "param": "model",
                                              "code": "model_not_found"}}, 404)
        card = self.sim.model_card()
        self._send_json({**card, "id": name, "root": name})

    def _loads(self) -> None:
        t0 = time.perf_counter()
        q = self._query()
        include = {s.strip() for s in q["include"].split(",")} if q.get("include") else None
        if include is not None and not include <= LOAD_SECTIONS:
            bad = include - LOAD_SECTIONS
            return self._send_json({"detail": f"Invalid include sections: {bad}. "
                                              f"Valid options: {sorted(LOAD_SECTIONS)}"}, 400)
        body = self.sim.loads(include)
        if q.get("dp_rank") not in (None, "0"):
            body["loads"] = []
        self.sim.metrics.get_loads_duration.observe(time.perf_counter() - t0)
        if q.get("format") == "prometheus":
            lines = []
            prefixes = {"disaggregation": "disagg", "speculative": "spec"}
            for load in body["loads"]:
                rank = load["dp_rank"]
                for key, value in load.items():
                    if isinstance(value, dict):
                        for sub, v in value.items():
                            if isinstance(v, (int, float)):
                                lines += [f"# TYPE sglang_{prefixes.get(key, key)}_{sub} gauge",
                                          f'sglang_{prefixes.get(key, key)}_{sub}{{dp_rank="{rank}"}} {v}']
                    elif isinstance(value, (int, float)) and key != "dp_rank":
                        lines += [f"# TYPE sglang_{key} gauge", f'sglang_{key}{{dp_rank="{rank}"}} {value}']
            return self._send_text("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8")
        self._send_json(body)

    def _flush_cache(self) -> None:
        if self.command == "POST":
            self._drain()
        self._send_text("Cache flushed.\nPlease check backend logs for more details. (When there are running or "
                        "waiting requests, the operation will not be performed.)\n")

    def _metrics(self) -> None:
        data = generate_latest(self.sim.metrics.registry)
        self.send_response(200)
        self.send_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _generate(self, body: dict[str, Any]) -> None:
        sp = body.get("sampling_params") or {}
        if isinstance(sp, list):  # one per prompt in SGLang; the simulator runs them all alike
            sp = sp[0] if sp else {}
        max_new = self._max_tokens(sp.get("max_new_tokens"), 128)  # SGLang's SamplingParams default
        text = body.get("text")
        stream = bool(body.get("stream"))
        if isinstance(text, list):
            if stream:
                return self._send_json({"error": {"message": "the simulator streams one prompt at a time"}}, 400)
            if any(self.sim.draw_failure() for _ in text):
                return self._send_json({"error": {"message": "simulated failure (--error-rate)"}}, 500)
            return self._send_json([self._generate_one(t, None, max_new, stream=False, rid=None, respond=False)
                                    for t in text])
        if self.sim.draw_failure(stream):
            return self._send_json({"error": {"message": "simulated failure (--error-rate)"}}, 500)
        self._generate_one(text or "", body.get("input_ids"), max_new, stream=stream, rid=body.get("rid"))

    def _generate_one(self, text: str, input_ids: list[int] | None, max_new: int, *, stream: bool,
                      rid: str | None, respond: bool = True) -> dict[str, Any] | None:
        """One native /generate request; sends it, or returns the body when `respond` is false."""
        prompt = text if input_ids is None else " ".join(map(str, input_ids))
        n_prompt = len(input_ids) if input_ids is not None else count_tokens(text)
        rid = rid or uuid.uuid4().hex
        with_timing = bool(self.sim.cfg.server_args.get("enable_metrics"))
        timing: dict[str, float] = {}
        out_text, ids = "", []

        def payload(finished: bool) -> dict[str, Any]:
            # tokenizer_manager.py::_handle_batch_output, then _wait_one_response on the last one
            meta: dict[str, Any] = {
                "id": rid,
                "finish_reason": {"type": "length", "length": max_new} if finished else None,
                "prompt_tokens": n_prompt,
                "weight_version": self.sim.weight_version,
                "num_retractions": 0,
                "reasoning_tokens": 0,
                "completion_tokens": len(ids),
                "cached_tokens": 0,
            }
            if finished:
                meta["e2e_latency"] = timing["finished"] - timing["created"]
                if with_timing:  # ReqTimeStats.convert_to_output_meta_info, with --enable-metrics
                    meta["request_received_ts"] = timing["created"]
                    if "first_token" in timing:
                        meta["first_token_latency"] = timing["first_token"] - timing["created"]
                    meta["request_finished_ts"] = timing["finished"]
                    if len(ids) > 1 and timing["finished"] > timing.get("first_token", timing["finished"]):
                        meta["decode_throughput"] = (len(ids) - 1) / (timing["finished"] - timing["first_token"])
                meta["response_sent_to_client_ts"] = time.time()
            return {"text": out_text, "output_ids": list(ids), "meta_info": meta}

        if stream:
            self._start_stream()
        try:
            for tid, piece in self.sim.run(prompt, n_prompt, max_new, stream=stream, timing=timing):
                out_text += piece
                ids.append(tid)
                if stream and len(ids) < max_new:
                    self._event(payload(False))
            result = payload(True)
            if stream:
                self._event(result)
                self._end_stream()
                return None
        except (BrokenPipeError, ConnectionResetError):
            return None
        if respond:
            self._send_json(result)
            return None
        return result

    def _openai(self, body: dict[str, Any], prompt: str, chat: bool) -> None:
        stream = bool(body.get("stream"))
        if self.sim.draw_failure(stream):
            return self._openai_error(500, "simulated failure (--error-rate)", "InternalServerError")
        default_max = 128 if chat else 16  # SGLang: CompletionRequest.max_tokens = 16
        requested = body.get("max_completion_tokens")
        max_new = self._max_tokens(body.get("max_tokens") if requested is None else requested, default_max)
        model = body.get("model") or DEFAULT_MODEL_NAME
        n_prompt = count_tokens(prompt)
        rid = uuid.uuid4().hex  # the response id is the request's rid (meta_info["id"])
        obj = "chat.completion" if chat else "text_completion"
        created = int(time.time())
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))

        def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            # sse_utils.py::build_sse_content: StreamDelta and StreamChunk omit their None defaults
            return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": {"reasoning_content": None, **delta}, "logprobs": None,
                                 "finish_reason": finish, "matched_stop": None}]}

        if stream:
            self._start_stream()
            try:
                if chat:
                    self._event(chat_chunk({"role": "assistant", "content": ""}))
                n = 0
                for _, piece in self.sim.run(prompt, n_prompt, max_new, stream=True):
                    n += 1
                    if chat:
                        self._event(chat_chunk({"content": piece}))
                    else:
                        self._event({"id": rid, "object": obj, "created": created, "model": model,
                                     "choices": [{"index": 0, "text": piece, "logprobs": None,
                                                  "finish_reason": "length" if n == max_new else None,
                                                  "matched_stop": None}], "usage": None})
                if chat:
                    self._event(chat_chunk({}, "length"))
                if usage_wanted:
                    final = {"id": rid, "object": obj + (".chunk" if chat else ""), "created": created,
                             "model": model, "choices": [], "usage": _usage(n_prompt, n)}
                    if not chat:  # serving_completions.py dumps this one with exclude_none=True
                        final["usage"] = {k: v for k, v in final["usage"].items() if v is not None}
                    self._event(final)
                self._end_stream()
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        text = "".join(piece for _, piece in self.sim.run(prompt, n_prompt, max_new))
        if chat:  # ChatMessage drops tool_calls when None
            choice = {"index": 0, "message": {"role": "assistant", "content": text, "reasoning_content": None},
                      "logprobs": None, "finish_reason": "length", "matched_stop": None}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "matched_stop": None}
        self._send_json({"id": rid, "object": obj, "created": created, "model": model, "choices": [choice],
                         "usage": _usage(n_prompt, max_new), "metadata": {"weight_version": self.sim.weight_version}})

    def _completions(self, body: dict[str, Any]) -> None:
        prompt = body.get("prompt", "")
        self._openai(body, prompt if isinstance(prompt, str) else " ".join(map(str, prompt)), chat=False)

    def _chat(self, body: dict[str, Any]) -> None:
        self._openai(body, _chat_prompt(body.get("messages") or []), chat=True)


class _SimHTTPServer(ThreadingHTTPServer):
    # the stdlib's listen backlog of 5 drops connections when a load test opens dozens at once
    request_queue_size = 128


def make_server(cfg: SimConfig) -> ThreadingHTTPServer:
    """A bound (not yet serving) simulator server."""
    sim = Simulator(cfg)
    handler = type("BoundHandler", (Handler,), {"sim": sim, "timeout": cfg.idle_timeout_s})
    server = _SimHTTPServer((cfg.host, cfg.port), handler)
    server.daemon_threads = True
    cfg.port = server.server_address[1]  # --port 0 picks a free port; report the real one
    return server


def _config_file(p: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        p.error(f"--config {path}: {e}")
    if not isinstance(data, dict):
        p.error(f"--config {path} must hold a mapping of server args")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse_args(argv: list[str] | None = None) -> SimConfig:
    p = argparse.ArgumentParser(prog="python -m infraplan.serving.sim",
                                description="infraplan's SGLang HTTP API simulator (not inference).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="0 picks a free port (printed on startup).")
    p.add_argument("--model-path", required=True)
    p.add_argument("--revision", default=None)
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--tpot-ms", type=float, default=5.0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--startup-s", type=float, default=0.0)
    p.add_argument("--health-delay-s", type=float, default=HEALTH_SLEEP_S,
                   help="Seconds /health and /health_generate sleep before looking for their one-token generation "
                        "(SGLang: 1; 0 answers at once).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--instance-id", default=None)
    p.add_argument("--server-args-json", default="{}",
                   help="Extra SGLang server args reported by /server_info (api_key, admin_api_key are enforced).")
    p.add_argument("--config", default=None,
                   help="A YAML file of more server args, as SGLang's own --config (infraplan passes the API keys "
                        "this way, never on the command line).")
    a = p.parse_args(argv)
    try:
        extra = json.loads(a.server_args_json)
    except json.JSONDecodeError as e:
        p.error(f"--server-args-json is not JSON: {e}")
    if not isinstance(extra, dict):
        p.error("--server-args-json must be a JSON object")
    if a.config:
        extra.update(_config_file(p, a.config))
    if not 0.0 <= a.error_rate <= 1.0:
        p.error("--error-rate must be between 0 and 1")
    try:
        model_path = model_path_from_source(a.model_path)
    except ProviderError as e:
        p.error(str(e))
    cfg = SimConfig(
        model_path=model_path, served_model_name=a.served_model_name or model_path,  # SGLang's default
        revision=a.revision, host=a.host, port=a.port, ttft_ms=a.ttft_ms, tpot_ms=a.tpot_ms,
        error_rate=a.error_rate, startup_s=a.startup_s, health_delay_s=a.health_delay_s, seed=a.seed, server_args=extra,
    )
    if a.instance_id:
        cfg.instance_id = a.instance_id
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    server = make_server(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    print(f"infraplan sim (SGLang API simulator, not inference) listening on http://{host}:{port} "
          f"model={cfg.served_model_name} instance={cfg.instance_id}", flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

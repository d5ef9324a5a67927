"""infraplan sim: a small server that speaks SGLang 0.5.x's HTTP API. It is NOT inference.

It answers SGLang's routes with SGLang's JSON shapes (see
`sglang/srt/entrypoints/http_server.py` and `.../openai/protocol.py` of 0.5.6.post2)
so the local provider, health checks, rollouts and dashboards can be exercised
without a GPU. Text is deterministic filler (seeded by `--seed` and the prompt),
emitted after `--ttft-ms` and then every `--tpot-ms`, really sleeping, so the
latency metrics it exports under SGLang's metric names are real measurements of
the simulated timing. Every identity field says `infraplan-sim`.

`--server-args-json` adds SGLang server args to what `/server_info` reports; an
`api_key` there is enforced as SGLang does (Bearer token on all but /health*, /metrics).
`--port 0` binds a free port; the startup line names it.

    python -m infraplan.serving.sim --port 30000 --model-path org/name \
        --revision main --served-model-name name [--ttft-ms 20] [--tpot-ms 5]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from infraplan.errors import ProviderError
from infraplan.serving.sglang_args import model_path_from_source

ENGINE = "infraplan-sim"
SGLANG_API_VERSION = "0.5.6.post2"  # the SGLang release whose HTTP API this mimics
DEFAULT_CONTEXT_LENGTH = 4096
VOCAB = (
    "the a of to and in plan apply fleet replica model server token graph state drift "
    "node edge route queue batch cache prefix decode prefill latency budget region zone "
    "simulated text is not inference only filler words for testing the http contract"
).split()
SNAPSHOT = Path(__file__).resolve().parent.parent / "sglang" / "server_args_snapshot.json"

# SGLang's default buckets (sglang/srt/metrics/collector.py, TokenizerMetricsCollector).
TTFT_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
ITL_BUCKETS = [0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040,
               0.060, 0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.0, 2.0, 4.0, 6.0, 8.0]
E2E_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400,
               600, 1200, 1800, 2400]
# `sglang:time_per_output_token_seconds` and its buckets as SGLang's TokenizerMetricsCollector
# defined them (0.4.x); 0.5.x exports inter-token latency instead, dashboards still chart TPOT.
TPOT_BUCKETS = [0.002, 0.005, 0.010, 0.020, 0.030, 0.040, 0.050, 0.060, 0.070, 0.080, 0.090,
                0.100, 0.150, 0.200, 0.300, 0.400, 0.600, 0.800, 1.0, 2.0]


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
    #: real SGLang's /health runs a generation and sleeps 1 s first; set 1.0 to imitate it
    health_delay_s: float = 0.0
    seed: int = 0
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    server_args: dict[str, Any] = field(default_factory=dict)


class SimMetrics:
    """SGLang's Prometheus metrics (same names, types and labels), in a private registry."""

    def __init__(self, served_name: str):
        prometheus_client.disable_created_metrics()  # SGLang runs multiprocess mode: no *_created
        self.registry = r = CollectorRegistry()
        tok = {"model_name": served_name}
        sched = {"model_name": served_name, "engine_type": "unified", "tp_rank": "0", "pp_rank": "0"}

        def c(name, doc):
            return Counter(name, doc, list(tok), registry=r).labels(**tok)

        def h(name, doc, buckets):
            return Histogram(name, doc, list(tok), registry=r, buckets=buckets).labels(**tok)

        def g(name, doc):
            return Gauge(name, doc, list(sched), registry=r).labels(**sched)

        self.prompt_tokens = c("sglang:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = c("sglang:generation_tokens", "Number of generation tokens processed.")
        self.cached_tokens = c("sglang:cached_tokens", "Number of cached prompt tokens.")
        self.num_requests = c("sglang:num_requests", "Number of requests processed.")
        self.num_aborted = c("sglang:num_aborted_requests", "Number of requests aborted.")
        self.ttft = h("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS)
        self.itl = h("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS)
        self.tpot = h("sglang:time_per_output_token_seconds", "Histogram of time per output token in seconds.",
                      TPOT_BUCKETS)
        self.e2e = h("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", E2E_BUCKETS)
        self.num_running = g("sglang:num_running_reqs", "The number of running requests.")
        self.num_queue = g("sglang:num_queue_reqs", "The number of requests in the waiting queue.")
        self.num_used_tokens = g("sglang:num_used_tokens", "The number of used tokens.")
        self.token_usage = g("sglang:token_usage", "The token usage.")
        self.gen_throughput = g("sglang:gen_throughput", "The generation throughput (token/s).")
        self.cache_hit_rate = g("sglang:cache_hit_rate", "The prefix cache hit rate.")


@functools.cache
def _snapshot_defaults() -> dict[str, Any]:
    """SGLang's defaults for the common server args (from the committed parser snapshot)."""
    try:
        return {k: v["default"] for k, v in json.loads(SNAPSHOT.read_text())["args"].items()}
    except OSError:
        return {}


class Simulator:
    """The state behind the HTTP routes: identity, timing, deterministic text, metrics."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.started = time.monotonic()
        self.metrics = SimMetrics(cfg.served_model_name)
        self._lock = threading.Lock()
        self._error_rng = random.Random(cfg.seed)
        self._running = 0
        self._tokens_in_flight = 0
        self._recent: list[tuple[float, int]] = []  # (time, tokens) for gen_throughput
        self.context_length = int(cfg.server_args.get("context_length") or DEFAULT_CONTEXT_LENGTH)
        self.weight_version = str(cfg.server_args.get("weight_version") or "default")

    # -- identity -----------------------------------------------------------
    def ready(self) -> bool:
        return time.monotonic() - self.started >= self.cfg.startup_s

    def server_args(self) -> dict[str, Any]:
        """Server args as SGLang's `dataclasses.asdict(ServerArgs)` names them."""
        defaults = _snapshot_defaults()
        c = self.cfg
        base = {
            "model_path": c.model_path, "tokenizer_path": c.model_path, "revision": c.revision,
            "served_model_name": c.served_model_name, "host": c.host, "port": c.port,
            "context_length": self.context_length,
        }
        return {**defaults, **base, **c.server_args}

    def identity(self) -> dict[str, Any]:
        return {"engine": ENGINE, "instance_id": self.cfg.instance_id, "simulated": True}

    def model_info(self) -> dict[str, Any]:
        args = self.server_args()
        return {
            "model_path": self.cfg.model_path,
            "tokenizer_path": args["tokenizer_path"],
            "is_generation": True,
            "preferred_sampling_params": args.get("preferred_sampling_params"),
            "weight_version": self.weight_version,
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": ENGINE,
            "architectures": ["InfraplanSimulator"],
            "served_model_name": self.cfg.served_model_name,
            "revision": self.cfg.revision,
            **self.identity(),
        }

    def server_info(self) -> dict[str, Any]:
        with self._lock:
            throughput = self._throughput(time.monotonic())
        return {
            **self.server_args(),
            "status": "ready" if self.ready() else "starting",
            "max_total_num_tokens": self.context_length * 4,
            "max_req_input_len": self.context_length - 1,
            "internal_states": [{
                "last_gen_throughput": throughput,
                "memory_usage": {"weight": 0.0, "kvcache": 0.0, "token_capacity": self.context_length * 4, "graph": 0.0},
            }],
            "version": f"{ENGINE} (SGLang {SGLANG_API_VERSION} API)",
            **self.identity(),
        }

    def models(self) -> dict[str, Any]:
        name = self.cfg.served_model_name
        card = {"id": name, "object": "model", "created": int(time.time()), "owned_by": ENGINE,
                "root": name, "parent": None, "max_model_len": self.context_length}
        return {"object": "list", "data": [card]}

    def load(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"rid": None, "http_worker_ipc": None, "dp_rank": None, "num_reqs": self._running,
                     "num_waiting_reqs": 0, "num_tokens": self._tokens_in_flight}]

    # -- generation ---------------------------------------------------------
    def draw_failure(self) -> bool:
        """Whether this request fails (`--error-rate`); a failure counts as an aborted request."""
        with self._lock:
            failed = self._error_rng.random() < self.cfg.error_rate
        if failed:  # SGLang counts an aborted request in both counters, so the error rate is aborted / requests
            self.metrics.num_requests.inc()
            self.metrics.num_aborted.inc()
        return failed

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

    def run(self, prompt: str, prompt_tokens: int, max_new_tokens: int) -> Iterator[tuple[int, str]]:
        """Yield tokens at the simulated pace; records SGLang's latency metrics."""
        m = self.metrics
        start = time.monotonic()
        with self._lock:
            self._running += 1
            self._tokens_in_flight += prompt_tokens
            m.num_running.set(self._running)
            m.num_used_tokens.set(self._tokens_in_flight)
        m.num_requests.inc()
        m.prompt_tokens.inc(prompt_tokens)
        emitted = 0
        try:
            last = first = start
            for i, tok in enumerate(self.tokens(prompt, max_new_tokens)):
                due = start + (self.cfg.ttft_ms + i * self.cfg.tpot_ms) / 1000.0
                time.sleep(max(0.0, due - time.monotonic()))
                now = time.monotonic()
                (m.ttft if i == 0 else m.itl).observe(now - (start if i == 0 else last))
                first = now if i == 0 else first
                last = now
                emitted += 1
                m.generation_tokens.inc()
                with self._lock:
                    self._tokens_in_flight += 1
                    self._recent.append((now, 1))
                yield tok
            m.e2e.observe(time.monotonic() - start)
            if emitted >= 2:  # time per output token after the first, one observation per request
                m.tpot.observe((last - first) / (emitted - 1))
        except GeneratorExit:
            m.num_aborted.inc()
            raise
        finally:
            with self._lock:
                self._running -= 1
                self._tokens_in_flight -= prompt_tokens + emitted
                m.num_running.set(self._running)
                m.num_used_tokens.set(self._tokens_in_flight)
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
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(f"{msg.get('role', 'user')}: {content or ''}")
    return "\n".join(parts)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens, "prompt_tokens_details": None, "reasoning_tokens": 0}


class Handler(BaseHTTPRequestHandler):
    """Routes of SGLang's http_server, answered by the Simulator."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid 40 ms delayed-ACK stalls
    server_version = f"{ENGINE}/{SGLANG_API_VERSION}"
    sim: Simulator  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet access log
        pass

    # -- plumbing -----------------------------------------------------------
    def _send_json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
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

    def _body(self) -> dict[str, Any] | list[Any] | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raw = self._read_chunked()  # smg streams the bodies it will not retry (--disable-retries)
            if raw is None:
                return None
        else:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return None

    def _read_chunked(self) -> bytes | None:
        """A chunked request body, read to its end so the connection stays usable; None if malformed."""
        parts: list[bytes] = []
        while True:
            try:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            if size < 0:
                self.close_connection = True
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):  # trailer fields
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF that ends the chunk

    def _authorized(self) -> bool:
        key = self.sim.cfg.server_args.get("api_key")
        path = self.path.split("?", 1)[0]
        if not key or path.startswith(("/health", "/ready", "/metrics")):
            return True
        return self.headers.get("Authorization") == f"Bearer {key}"

    def _openai_error(self, status: int, message: str, kind: str) -> None:
        self._send_json({"object": "error", "message": message, "type": kind, "param": None, "code": status}, status)

    # -- dispatch -----------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    do_PUT = do_POST

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if not self._authorized():
            self._body()
            return self._send_json({"error": "Unauthorized"}, 401)
        get_routes = {
            "/health": self._health, "/health_generate": self._health, "/ready": self._ready,
            "/model_info": lambda: self._send_json(self.sim.model_info()),
            "/get_model_info": lambda: self._send_json(self.sim.model_info()),
            "/server_info": lambda: self._send_json(self.sim.server_info()),
            "/get_server_info": lambda: self._send_json(self.sim.server_info()),
            "/v1/models": lambda: self._send_json(self.sim.models()),
            "/get_load": lambda: self._send_json(self.sim.load()),
            "/weight_version": lambda: self._send_json({"weight_version": self.sim.model_info()["weight_version"]}),
            "/metrics": self._metrics,
        }
        post_routes = {"/generate": self._generate, "/v1/completions": self._completions,
                       "/v1/chat/completions": self._chat}
        if method == "GET" and path in get_routes:
            return get_routes[path]()
        if path in post_routes and (method in ("POST", "PUT")):
            body = self._body()
            if not isinstance(body, dict):
                return self._openai_error(400, "request body must be a JSON object", "BadRequestError")
            if not self.sim.ready():
                return self._openai_error(503, "the simulator is still starting (--startup-s)", "ServiceUnavailable")
            try:
                return post_routes[path](body)
            except BadRequest as e:
                return self._openai_error(400, str(e), "BadRequestError")
        if method != "GET":
            self._body()
        self._send_json({"detail": "Not Found"}, 404)

    def _max_tokens(self, value: Any, default: int) -> int:
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= self.sim.context_length:
            raise BadRequest(f"max tokens must be an integer between 0 and {self.sim.context_length}, got {value!r}")
        return value

    # -- routes -------------------------------------------------------------
    def _health(self) -> None:
        if self.sim.cfg.health_delay_s:
            time.sleep(self.sim.cfg.health_delay_s)
        self._send_empty(200 if self.sim.ready() else 503)

    def _ready(self) -> None:
        """SGLang 0.5.23's `/ready`: at once, no generation, no auth."""
        self._send_empty(200 if self.sim.ready() else 503)

    def _metrics(self) -> None:
        data = generate_latest(self.sim.metrics.registry)
        self.send_response(200)
        self.send_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _generate(self, body: dict[str, Any]) -> None:
        sp = body.get("sampling_params") or {}
        max_new = self._max_tokens(sp.get("max_new_tokens"), 128)  # SGLang's SamplingParams default
        text = body.get("text")
        if isinstance(text, list):
            if body.get("stream"):
                return self._send_json({"error": {"message": "the simulator streams one prompt at a time"}}, 400)
            if any(self.sim.draw_failure() for _ in text):
                return self._send_json({"error": {"message": "simulated failure (--error-rate)"}}, 500)
            return self._send_json([self._generate_one(t, None, max_new, stream=False, rid=None, respond=False) for t in text])
        if self.sim.draw_failure():
            return self._send_json({"error": {"message": "simulated failure (--error-rate)"}}, 500)
        self._generate_one(text or "", body.get("input_ids"), max_new, stream=bool(body.get("stream")), rid=body.get("rid"))

    def _generate_one(self, text: str, input_ids: list[int] | None, max_new: int, *, stream: bool,
                      rid: str | None, respond: bool = True) -> dict[str, Any] | None:
        """One native /generate request; sends it, or returns the body when `respond` is false."""
        prompt = text if input_ids is None else " ".join(map(str, input_ids))
        n_prompt = len(input_ids) if input_ids is not None else count_tokens(text)
        rid = rid or uuid.uuid4().hex
        created = time.time()
        out_text, ids = "", []

        def payload(finished: bool) -> dict[str, Any]:
            meta: dict[str, Any] = {
                "id": rid,
                "finish_reason": {"type": "length", "length": max_new} if finished else None,
                "prompt_tokens": n_prompt,
                "weight_version": self.sim.weight_version,
                "total_retractions": 0,
                "completion_tokens": len(ids),
                "cached_tokens": 0,
            }
            if finished:
                meta["e2e_latency"] = time.time() - created
            return {"text": out_text, "output_ids": list(ids), "meta_info": meta}

        if stream:
            self._start_stream()
        try:
            for tid, piece in self.sim.run(prompt, n_prompt, max_new):
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
        if self.sim.draw_failure():
            return self._openai_error(500, "simulated failure (--error-rate)", "InternalServerError")
        default_max = 128 if chat else 16  # SGLang: CompletionRequest.max_tokens = 16
        requested = body.get("max_completion_tokens")
        max_new = self._max_tokens(body.get("max_tokens") if requested is None else requested, default_max)
        model = body.get("model") or self.sim.cfg.served_model_name
        n_prompt = count_tokens(prompt)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        obj = "chat.completion" if chat else "text_completion"
        created = int(time.time())
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
            return {"id": rid, "object": obj + (".chunk" if chat else ""), "created": created,
                    "model": model, "choices": choices, "usage": usage}

        if body.get("stream"):
            self._start_stream()
            try:
                if chat:
                    self._event(chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "reasoning_content": None, "tool_calls": None},
                                        "logprobs": None, "finish_reason": None, "matched_stop": None}]))
                n = 0
                for _, piece in self.sim.run(prompt, n_prompt, max_new):
                    n += 1
                    last = n == max_new
                    if chat:
                        self._event(chunk([{"index": 0, "delta": {"role": None, "content": piece, "reasoning_content": None, "tool_calls": None},
                                            "logprobs": None, "finish_reason": None, "matched_stop": None}]))
                    else:
                        self._event(chunk([{"index": 0, "text": piece, "logprobs": None,
                                            "finish_reason": "length" if last else None, "matched_stop": None}]))
                if chat:
                    self._event(chunk([{"index": 0, "delta": {"role": None, "content": None, "reasoning_content": None, "tool_calls": None},
                                        "logprobs": None, "finish_reason": "length", "matched_stop": None}]))
                if usage_wanted:
                    final = chunk([], _usage(n_prompt, n))
                    if not chat:  # SGLang dumps this one with exclude_none=True
                        final = {k: v for k, v in final.items() if v is not None}
                        final["usage"] = {k: v for k, v in final["usage"].items() if v is not None}
                    self._event(final)
                self._end_stream()
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        text = "".join(piece for _, piece in self.sim.run(prompt, n_prompt, max_new))
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text or None, "reasoning_content": None, "tool_calls": None},
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
    handler = type("BoundHandler", (Handler,), {"sim": sim})
    server = _SimHTTPServer((cfg.host, cfg.port), handler)
    server.daemon_threads = True
    cfg.port = server.server_address[1]  # --port 0 picks a free port; report the real one
    return server


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
    p.add_argument("--health-delay-s", type=float, default=0.0, help="Seconds /health takes (real SGLang: about 1).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--instance-id", default=None)
    p.add_argument("--server-args-json", default="{}", help="Extra SGLang server args reported by /server_info.")
    a = p.parse_args(argv)
    try:
        extra = json.loads(a.server_args_json)
    except json.JSONDecodeError as e:
        p.error(f"--server-args-json is not JSON: {e}")
    if not isinstance(extra, dict):
        p.error("--server-args-json must be a JSON object")
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

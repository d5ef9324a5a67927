"""The simulated engine behind the simulator's routes: identity, server args, load, and token
generation at the configured pace with SGLang 0.5.23's metrics. No HTTP here (see `sim_http`).

Generation is an async iterator that really sleeps (`asyncio.sleep`) between tokens, so hundreds
of streams share one event loop and their latencies are the configured ones.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

from infraplan.serving.sim_metrics import SimMetrics

ENGINE = "infraplan-sim"
SGLANG_API_VERSION = "0.5.23"  # the SGLang release whose HTTP API this mimics
DEFAULT_CONTEXT_LENGTH = 4096
DEFAULT_MODEL_NAME = "default"  # SGLang's OpenAI requests without `model` (openai/protocol.py)
#: SGLang's /health and /health_generate sleep this long before looking for the generation's answer
HEALTH_SLEEP_S = 1.0
#: seconds a connection may sit idle (between requests, or mid-request) before it is closed:
#: uvicorn's `timeout_keep_alive` default, so an idle client does not hold a connection forever
IDLE_TIMEOUT_S = 5.0
VOCAB = (
    "the a of to and in plan apply fleet replica model server token graph state drift "
    "node edge route queue batch cache prefix decode prefill latency budget region zone "
    "simulated text is not inference only filler words for testing the http contract"
).split()
SERVER_ARGS_FIELDS = Path(__file__).with_name("sim_server_args.json")
#: the sections /v1/loads accepts in `include` (srt/managers/load_snapshot.py, LoadSnapshot.VALID_SECTIONS)
LOAD_SECTIONS = frozenset({"core", "memory", "spec", "lora", "disagg", "queues", "all"})


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
        self._error_rng = random.Random(cfg.seed)
        self._running = 0
        self._tokens_in_flight = 0
        self._token_times: deque[float] = deque()  # when each token of the last 5 s went out (gen_throughput)
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
        failed = self._error_rng.random() < self.cfg.error_rate
        if failed:  # SGLang counts an aborted request in both counters, so the error rate is aborted / requests
            self.metrics.series(stream).num_requests.inc()
            self.metrics.num_aborted.inc()
        return failed

    async def health_wait(self) -> None:
        """How long SGLang's health check takes: 1 s sleeps until the one-token generation answered."""
        step = self.cfg.health_delay_s
        if step <= 0:
            return
        first_token_s = self.cfg.ttft_ms / 1000.0
        await asyncio.sleep(step * max(1, math.ceil(first_token_s / step - 1e-9)))

    def _throughput(self, now: float) -> float:
        times = self._token_times
        while times and now - times[0] > 5.0:
            times.popleft()
        return round(len(times) / 5.0, 2)

    def tokens(self, prompt: str, n: int) -> list[tuple[int, str]]:
        """`n` deterministic (token id, text piece) pairs for this seed and prompt."""
        rng = random.Random(f"{self.cfg.seed}\x00{prompt}")
        out = []
        for i in range(n):
            k = rng.randrange(len(VOCAB))
            out.append((1000 + k, VOCAB[k] if i == 0 else " " + VOCAB[k]))
        return out

    async def run(self, prompt: str, prompt_tokens: int, max_new_tokens: int, *, stream: bool = False,
                  timing: dict[str, float] | None = None) -> AsyncIterator[tuple[int, str]]:
        """Yield tokens at the simulated pace; records SGLang's metrics when the request finishes.

        `timing`, when given, receives `created`, `first_token` and `finished` (time.time()).
        Close it (`contextlib.aclosing`) when stopping early: the request then counts as aborted.
        """
        m = self.metrics
        series = m.series(stream)
        start = time.monotonic()
        wall0 = time.time()
        if timing is not None:
            timing["created"] = wall0
        self._running += 1
        self._tokens_in_flight += prompt_tokens
        m.num_running.set(self._running)
        m.num_used_tokens.set(self._tokens_in_flight)
        ttft_s, tpot_s = self.cfg.ttft_ms / 1000.0, self.cfg.tpot_ms / 1000.0
        emitted, finished = 0, False
        first = last = start
        try:
            for i, tok in enumerate(self.tokens(prompt, max_new_tokens)):
                # each token is due at its own time from the start, so a late wake-up is not carried over
                await asyncio.sleep(max(0.0, start + ttft_s + i * tpot_s - time.monotonic()))
                now = time.monotonic()
                if i == 0:
                    first = now
                    series.ttft.observe(now - start)
                    if timing is not None:
                        timing["first_token"] = wall0 + (now - start)
                else:
                    m.itl.observe(now - last)
                last = now
                emitted += 1
                self._tokens_in_flight += 1
                self._token_times.append(now)
                yield tok
            finished = True
        except GeneratorExit:
            m.num_aborted.inc()
            raise
        finally:
            end = time.monotonic()
            if timing is not None:
                timing["finished"] = wall0 + (end - start)
            series.num_requests.inc()
            series.prompt_tokens.inc(prompt_tokens)
            series.generation_tokens.inc(emitted)
            series.e2e.observe(end - start)
            if finished and emitted >= 2 and last > first:  # stop/length finishes only, as SGLang
                series.tpot.observe((last - first) / (emitted - 1))
            m.prompt_tokens_hist.observe(prompt_tokens)
            m.uncached_prompt_tokens_hist.observe(prompt_tokens)
            m.generation_tokens_hist.observe(emitted)
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


def chat_prompt(messages: list[dict[str, Any]]) -> str:
    parts = []
    for msg in messages or []:
        content = msg.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text") or "" for p in content if isinstance(p, dict))
        parts.append(f"{msg.get('role', 'user')}: {content or ''}")
    return "\n".join(parts)


def usage_info(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """`UsageInfo` (openai/protocol.py) as UsageProcessor fills it without reasoning or cache report."""
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens, "prompt_tokens_details": None, "reasoning_tokens": 0,
            "completion_tokens_details": None}

"""Bounded load against an SGLang / OpenAI-compatible endpoint, measured like SGLang's bench_serving.

The metric definitions follow SGLang's `python/sglang/bench_serving.py` (itself adapted from
vLLM's `benchmarks/benchmark_serving.py`): `async_request_openai_chat_completions`,
`async_request_openai_completions`, `async_request_sglang_generate` and `calculate_metrics`.
Every request streams (SSE); times are `time.perf_counter()`:

- start: taken just before the request is sent, once a concurrency slot is held (SGLang
  measures inside its semaphore too, so queueing for a slot is not TTFT).
- TTFT: start -> first streamed chunk that carries text (chat `delta.content`, completions
  `choices[0].text`, /generate `text`). Role-only and usage-only chunks do not count.
- ITL: the gaps between consecutive text chunks. For /generate, where one chunk may carry
  several new tokens, the gap is split evenly over them (`gap / new_tokens`, repeated), as
  SGLang does. ITLs of all requests are pooled.
- E2E latency: start -> the last non-empty SSE line (`data: [DONE]` included).
- TPOT: per request `(e2e - ttft) / (output_tokens - 1)`, only for requests with more than one
  output token (a 1-token request has no TPOT, as in SGLang).
- output tokens: the server's `usage.completion_tokens` / `meta_info.completion_tokens`.
  SGLang falls back to the requested length when the server reports none; here the fallback
  is the number of text chunks received, which is a real count.
- input tokens: the server's `prompt_tokens` when reported, else the requested length.
- duration: first dispatch -> every request finished. Request throughput is
  completed / duration, output token throughput total output tokens / duration, total token
  throughput (input + output) / duration, and concurrency sum(e2e) / duration.
- statistics: mean, std (population, like `np.std`), median, p90, p95, p99 and max, with the
  linear interpolation of `np.percentile`. SGLang prints mean/median/p99 (plus p95 and max for
  ITL); an empty sample is `None` here where SGLang reports 0.

Load shape: at most `concurrency` requests in flight. Without `rate` each free slot sends at
once (a closed loop, SGLang's `--request-rate inf --max-concurrency N`, 8 slots by default);
with `rate` requests arrive at exponential (Poisson, SGLang's default) or fixed intervals
whatever the server does (an open loop, bounded by `MAX_CONCURRENCY` unless a concurrency is
given, then arrivals wait for a slot). `warmup` requests go first, closed loop, and are not
counted. Sending stops at `duration_s` or `num_requests`, whichever comes first; requests in
flight then finish, each bounded by `timeout_s`, so a run always ends by `duration_s + timeout_s`.

The client is aiohttp (as SGLang's bench_serving), one keep-alive connection per slot, so that
the client is not what is measured: it reports its own CPU (process CPU per request, and the
event loop's share of one core), and warns when that share passes `SATURATED_CORE_SHARE`,
since past it the client's own delays are in the latencies.

Prompts are `prompt_tokens` seeded filler words (a word is a token for infraplan's simulator,
roughly one for real tokenizers), distinct per request so a prefix cache does not flatter the
numbers. `ignore_eos` is sent so servers that honour it produce exactly `output_tokens`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from infraplan.errors import InfraplanError
from infraplan.serving.http import Failure, aiohttp_failure
from infraplan.util.time import utc_now

FORMAT_VERSION = 1
API_ROUTES = {
    "openai-chat": "/v1/chat/completions",
    "openai-completions": "/v1/completions",
    "sglang-generate": "/generate",
}
Api = Literal["openai-chat", "openai-completions", "sglang-generate"]
DEFAULT_DURATION_S = 30.0
MAX_REQUESTS = 1_000_000  # hard caps: a run always terminates
MAX_DURATION_S = 24 * 3600.0
MAX_CONCURRENCY = 4096
DEFAULT_CONCURRENCY = 8  # closed loop; an open loop (a rate) is bounded by MAX_CONCURRENCY only
#: the share of one core the client's event loop may use before its own delays show in the figures
SATURATED_CORE_SHARE = 0.8
PERCENTILES = (50, 90, 95, 99)
_WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
          "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


class BenchError(InfraplanError):
    """A bench cannot run as asked (bad arguments, or the endpoint cannot be reached at all)."""


@dataclass
class RequestRecord:
    """One request as measured. Times are seconds; `start_s` is relative to the run's start."""

    index: int
    start_s: float
    success: bool = False
    error: str | None = None
    status: int | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0

    @property
    def tpot_s(self) -> float | None:
        """(e2e - ttft) / (output_tokens - 1); None with fewer than two output tokens."""
        if not self.success or self.output_tokens < 2 or self.e2e_s is None or self.ttft_s is None:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


@dataclass
class BenchConfig:
    """What a run was asked to do."""

    url: str
    api: str
    model: str | None
    concurrency: int
    rate: float | None
    arrival: str
    duration_s: float | None
    num_requests: int | None
    prompt_tokens: int
    output_tokens: int
    timeout_s: float
    seed: int
    warmup_requests: int = 0

    @property
    def mode(self) -> str:
        """`open-loop` (requests arrive at `rate`, whatever the server does) or `closed-loop`."""
        return "open-loop" if self.rate else "closed-loop"


@dataclass(frozen=True)
class ClientUsage:
    """What the load generator itself cost during the measured part of a run."""

    cpu_s: float  # process CPU (user + system)
    loop_cpu_s: float  # CPU of the thread running the event loop, which can use one core at most
    duration_s: float
    requests: int

    @property
    def cpu_ms_per_request(self) -> float | None:
        return self.cpu_s * 1000 / self.requests if self.requests else None

    @property
    def core_share(self) -> float:
        """The event loop's CPU over the run's wall time: 1.0 is one core busy all along."""
        return self.loop_cpu_s / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def saturated(self) -> bool:
        return self.core_share > SATURATED_CORE_SHARE

    def warning(self) -> str | None:
        """One line when the client was near saturation (its own delays are in the latencies)."""
        if not self.saturated:
            return None
        return (f"the bench client used {self.core_share:.0%} of one core: its own delays are in these figures "
                f"(lower the concurrency or rate, or run more clients)")

    def to_dict(self) -> dict[str, Any]:
        return {"cpu_s": self.cpu_s, "loop_cpu_s": self.loop_cpu_s, "cpu_ms_per_request": self.cpu_ms_per_request,
                "core_share": self.core_share, "saturated": self.saturated}


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile with linear interpolation (numpy's default); None when empty."""
    if not values:
        return None
    xs = sorted(values)
    rank = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def summarize(values_s: list[float]) -> dict[str, float | int | None]:
    """count, mean, std, median, p90, p95, p99, max of seconds, in milliseconds."""
    n = len(values_s)
    if not n:
        return {"count": 0, "mean": None, "std": None, "median": None,
                **{f"p{p}": None for p in PERCENTILES[1:]}, "max": None}
    mean = sum(values_s) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values_s) / n)
    out: dict[str, float | int | None] = {"count": n, "mean": mean * 1000, "std": std * 1000}
    for p in PERCENTILES:
        out["median" if p == 50 else f"p{p}"] = percentile(values_s, p) * 1000
    out["max"] = max(values_s) * 1000
    return out


@dataclass
class BenchResult:
    """Per-request records of one run and the statistics computed from them."""

    config: BenchConfig
    records: list[RequestRecord]
    duration_s: float
    started_at: str
    model: str | None = None
    client: ClientUsage | None = None
    warmup_failed: int = 0

    @property
    def completed(self) -> list[RequestRecord]:
        return [r for r in self.records if r.success]

    @property
    def failed(self) -> list[RequestRecord]:
        return [r for r in self.records if not r.success]

    def failure_reasons(self) -> dict[str, int]:
        """Failed requests counted by reason."""
        out: dict[str, int] = {}
        for r in self.failed:
            out[r.error or "unknown"] = out.get(r.error or "unknown", 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def latency_ms(self) -> dict[str, dict[str, Any]]:
        """ttft, tpot, itl and e2e statistics in milliseconds over completed requests."""
        ok = self.completed
        return {
            "ttft": summarize([r.ttft_s for r in ok if r.ttft_s is not None]),
            "tpot": summarize([t for r in ok if (t := r.tpot_s) is not None]),
            "itl": summarize([x for r in ok for x in r.itl_s]),
            "e2e": summarize([r.e2e_s for r in ok if r.e2e_s is not None]),
        }

    def throughput(self) -> dict[str, float]:
        ok, d = self.completed, self.duration_s or float("nan")
        inp = sum(r.prompt_tokens for r in ok)
        out = sum(r.output_tokens for r in ok)
        return {
            "requests_per_s": len(ok) / d,
            "input_tokens_per_s": inp / d,
            "output_tokens_per_s": out / d,
            "total_tokens_per_s": (inp + out) / d,
            "concurrency": sum(r.e2e_s or 0.0 for r in ok) / d,
        }

    def to_dict(self, include_records: bool = False) -> dict[str, Any]:
        """The JSON document (see `to_json`)."""
        ok = self.completed
        doc: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "tool": "infraplan bench",
            "definitions": "sglang bench_serving",
            "started_at": self.started_at,
            "config": asdict(self.config),
            "mode": self.config.mode,
            "model": self.model,
            "duration_s": self.duration_s,
            "requests": {"sent": len(self.records), "completed": len(ok), "failed": len(self.failed)},
            "failures": self.failure_reasons(),
            "tokens": {"input": sum(r.prompt_tokens for r in ok), "output": sum(r.output_tokens for r in ok)},
            "throughput": self.throughput(),
            "latency_ms": self.latency_ms(),
            "warmup": {"requests": self.config.warmup_requests, "failed": self.warmup_failed},
            "client": self.client.to_dict() if self.client else None,
            "warnings": [w for w in (self.client.warning() if self.client else None,) if w],
        }
        if include_records:
            doc["records"] = [{**asdict(r), "tpot_s": r.tpot_s} for r in self.records]
        return doc

    def to_json(self, include_records: bool = False, indent: int | None = 2) -> str:
        """JSON, `format_version` 1::

            {"format_version": 1, "tool": "infraplan bench", "definitions": "sglang bench_serving",
             "started_at": ISO-8601 UTC, "config": {url, api, model, concurrency, rate, arrival,
             duration_s, num_requests, prompt_tokens, output_tokens, timeout_s, seed, warmup_requests},
             "mode": "closed-loop" | "open-loop", "model": served model used, "duration_s": float,
             "requests": {"sent", "completed", "failed"}, "failures": {reason: count},
             "tokens": {"input", "output"},
             "throughput": {"requests_per_s", "input_tokens_per_s", "output_tokens_per_s",
                            "total_tokens_per_s", "concurrency"},
             "latency_ms": {"ttft"|"tpot"|"itl"|"e2e": {"count", "mean", "std", "median",
                            "p90", "p95", "p99", "max"}},      # null when no sample
             "warmup": {"requests", "failed"},                  # warm-up requests, not counted above
             "client": {"cpu_s", "loop_cpu_s", "cpu_ms_per_request", "core_share", "saturated"},
             "warnings": [str],                                 # e.g. the client near saturation
             "records": [{index, start_s, success, error, status, ttft_s, e2e_s, itl_s,
                          prompt_tokens, output_tokens, tpot_s}]}   # with include_records

        Non-finite numbers (a zero-length run) are written as null.
        """
        return json.dumps(_finite(self.to_dict(include_records)), indent=indent)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


# -- requests ----------------------------------------------------------------------------------
def endpoint_url(url: str, api: str) -> tuple[str, str]:
    """(base URL, request URL) for `api`; a URL already naming the route (or /v1) is kept."""
    if api not in API_ROUTES:
        raise BenchError(f"unknown api {api!r} (one of {', '.join(API_ROUTES)})")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BenchError(f"not an http(s) URL: {url!r}")
    path = parts.path.rstrip("/")
    route = API_ROUTES[api]
    for r in API_ROUTES.values():
        if path.endswith(r):
            path = path[: -len(r)]
            route = r
            break
    else:
        if path.endswith("/v1") and route.startswith("/v1/"):
            path = path[:-3]
    base = f"{parts.scheme}://{parts.netloc}{path}"
    return base, base + route


def make_prompt(n_tokens: int, seed: int, index: int) -> str:
    """`n_tokens` filler words, distinct per request."""
    rng = random.Random(f"{seed}:{index}")
    return " ".join(rng.choice(_WORDS) for _ in range(max(1, n_tokens)))


def _payload(api: str, model: str | None, prompt: str, max_tokens: int) -> dict[str, Any]:
    if api == "sglang-generate":
        return {"text": prompt, "stream": True,
                "sampling_params": {"temperature": 0.0, "max_new_tokens": max_tokens, "ignore_eos": True}}
    body: dict[str, Any] = {"temperature": 0.0, "max_tokens": max_tokens, "stream": True,
                            "stream_options": {"include_usage": True}, "ignore_eos": True}
    if model:
        body["model"] = model
    if api == "openai-chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body


_JSON_BODY = {"Content-Type": "application/json"}
_FAILURE_TEXT = {Failure.TIMEOUT: "timeout ({})", Failure.REFUSED: "connect error",
                 Failure.BROKEN: "broken stream ({})", Failure.OTHER: "http error ({})"}


async def _one(session: aiohttp.ClientSession, api: str, url: str, body: bytes,
               rec: RequestRecord, t0: float, timeout_s: float) -> None:
    """Send one streaming request and fill `rec` (never raises for request failures)."""
    st = time.perf_counter()
    rec.start_s = st - t0
    try:
        async with asyncio.timeout(timeout_s):
            await _stream(session, api, url, body, rec, st)
    except aiohttp.ClientError as e:  # before TimeoutError: aiohttp's own timeouts are both
        rec.error = _FAILURE_TEXT[aiohttp_failure(e)].format(type(e).__name__)
    except TimeoutError:
        rec.error = f"timeout after {timeout_s:g}s"
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        rec.error = f"bad response ({type(e).__name__})"


class _Reading:
    """One streamed response as it is read, line by line (SSE ``data:`` lines)."""

    def __init__(self, api: str, rec: RequestRecord, st: float):
        self.rec, self.st, self.last = rec, st, st
        self.generate, self.chat = api == "sglang-generate", api == "openai-chat"
        self.text_chunks = 0
        self.usage_out: int | None = None
        self.usage_in: int | None = None
        self.prev_tokens = 0  # /generate: completion_tokens at the previous text chunk
        self.done = False

    def line(self, line: bytes, now: float) -> bool:
        """Take one line received at `now`; False when the stream carried an error event."""
        line = line.strip()
        if not line:
            return True
        rec = self.rec
        rec.e2e_s = now - self.st
        if not line.startswith(b"data:"):
            return True
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return True
        chunk = json.loads(data)
        if isinstance(chunk, dict) and chunk.get("error"):
            err = chunk["error"]
            rec.error = "error event: " + str(err.get("message") if isinstance(err, dict) else err)[:200]
            return False
        if self.generate:
            meta = chunk.get("meta_info") or {}
            self.usage_in = meta.get("prompt_tokens", self.usage_in)
            if not chunk.get("text"):
                return True
            n = int(meta.get("completion_tokens") or self.prev_tokens + 1)
            new = n - self.prev_tokens
            if rec.ttft_s is None:
                rec.ttft_s = now - self.st
            elif new <= 0:
                return True
            else:
                rec.itl_s.extend([(now - self.last) / new] * new)
            self.last, self.prev_tokens, self.usage_out = now, n, n
            self.text_chunks += 1
            return True
        usage = chunk.get("usage") or {}
        self.usage_out = usage.get("completion_tokens", self.usage_out)
        self.usage_in = usage.get("prompt_tokens", self.usage_in)
        choices = chunk.get("choices") or []
        if not choices:
            return True
        c0 = choices[0]
        text = (c0.get("delta") or {}).get("content") if self.chat else c0.get("text")
        if not text:
            return True
        if rec.ttft_s is None:
            rec.ttft_s = now - self.st
        else:
            rec.itl_s.append(now - self.last)
        self.last = now
        self.text_chunks += 1
        return True

    def finish(self) -> None:
        """The stream ended: the request succeeded if it ended with [DONE] after some text."""
        rec = self.rec
        if not self.done:
            rec.error = "broken stream (no [DONE])"
            return
        if rec.ttft_s is None:
            rec.error = "no tokens streamed"
            return
        rec.output_tokens = int(self.usage_out) if self.usage_out is not None else self.text_chunks
        if self.usage_in is not None:
            rec.prompt_tokens = int(self.usage_in)
        rec.success = True


async def _stream(session: aiohttp.ClientSession, api: str, url: str, body: bytes,
                  rec: RequestRecord, st: float) -> None:
    reading = _Reading(api, rec, st)
    async with session.post(url, data=body, headers=_JSON_BODY) as resp:
        rec.status = resp.status
        if resp.status != 200:
            await resp.read()
            rec.error = f"HTTP {resp.status}"
            return
        # whatever arrived at once, split into lines here: a server sends an event per write,
        # so this is one wake-up per event rather than one per line
        tail = b""
        async for data in resp.content.iter_any():
            now = time.perf_counter()
            *lines, tail = (tail + data).split(b"\n")
            for line in lines:
                if not reading.line(line, now):
                    return
        if tail and not reading.line(tail, time.perf_counter()):
            return
    reading.finish()


# -- the run -----------------------------------------------------------------------------------
def _check(concurrency: int, rate: float | None, arrival: str, duration_s: float | None,
           num_requests: int | None, prompt_tokens: int, output_tokens: int, timeout_s: float,
           warmup: int = 0) -> None:
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise BenchError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise BenchError(f"rate must be a positive number of requests per second, got {rate}")
    if arrival not in ("poisson", "fixed"):
        raise BenchError(f"arrival must be 'poisson' or 'fixed', got {arrival!r}")
    if duration_s is not None and not 0 < duration_s <= MAX_DURATION_S:
        raise BenchError(f"duration must be above 0 and at most {MAX_DURATION_S:g}s, got {duration_s}")
    if num_requests is not None and not 1 <= num_requests <= MAX_REQUESTS:
        raise BenchError(f"requests must be between 1 and {MAX_REQUESTS}, got {num_requests}")
    if prompt_tokens < 1 or output_tokens < 1:
        raise BenchError("prompt and output tokens must be at least 1")
    if not timeout_s > 0:
        raise BenchError(f"timeout must be above 0, got {timeout_s}")
    if not 0 <= warmup <= MAX_REQUESTS:
        raise BenchError(f"warm-up requests must be between 0 and {MAX_REQUESTS}, got {warmup}")


async def _preflight(session: aiohttp.ClientSession, base: str, url: str, timeout_s: float) -> str | None:
    """Fail fast when nothing answers at `url`; returns the first served model if listed."""
    try:
        async with session.get(base + "/v1/models", timeout=aiohttp.ClientTimeout(total=min(timeout_s, 10.0))) as resp:
            if resp.status != 200:
                return None
            body = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        raise BenchError(f"cannot reach {url}: {type(e).__name__}: {e}") from None
    try:
        return json.loads(body)["data"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class _Load:
    """Sends a run's requests: each holds one of `concurrency` slots; with `rate`, they also
    arrive on a schedule (open loop), else each free slot sends at once (closed loop)."""

    def __init__(self, cfg: BenchConfig, session: aiohttp.ClientSession, url: str, model: str | None,
                 stop: threading.Event | None):
        self.cfg, self.session, self.url, self.model, self.stop = cfg, session, url, model, stop
        self.sem = asyncio.Semaphore(cfg.concurrency)

    def _body(self, index: int) -> bytes:
        cfg = self.cfg
        prompt = make_prompt(cfg.prompt_tokens, cfg.seed, index)
        return json.dumps(_payload(cfg.api, self.model, prompt, cfg.output_tokens)).encode()

    async def warm_up(self, n: int) -> list[RequestRecord]:
        """`n` requests at the run's concurrency, closed loop, before anything is measured."""
        return await self.send(range(-n, 0), rate=None, deadline=None)  # negative indexes: prompts of their own

    async def send(self, indexes: range, rate: float | None, deadline: float | None) -> list[RequestRecord]:
        """One request per index, until `deadline` (perf_counter) or `stop`; waits for all to finish."""
        cfg = self.cfg
        rng = random.Random(cfg.seed)
        records: list[RequestRecord] = []
        tasks: set[asyncio.Task] = set()
        t0 = next_at = time.perf_counter()
        end = deadline if deadline is not None else math.inf

        def stopping() -> bool:
            return time.perf_counter() >= end or (self.stop is not None and self.stop.is_set())

        async def run_one(rec: RequestRecord, body: bytes) -> None:
            try:
                await _one(self.session, cfg.api, self.url, body, rec, t0, cfg.timeout_s)
            finally:
                self.sem.release()

        for i in indexes:
            if rate:
                while (wait := min(next_at, end) - time.perf_counter()) > 0 and not stopping():
                    await asyncio.sleep(min(wait, 0.1))
                next_at += rng.expovariate(rate) if cfg.arrival == "poisson" else 1.0 / rate
            if stopping():
                break
            await self.sem.acquire()  # waits at most for one request in flight (<= timeout_s)
            if stopping():
                self.sem.release()
                break
            rec = RequestRecord(index=i, start_s=time.perf_counter() - t0, prompt_tokens=cfg.prompt_tokens)
            records.append(rec)
            task = asyncio.create_task(run_one(rec, self._body(i)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        return records


async def _run(cfg: BenchConfig, api_key: str | None, stop: threading.Event | None) -> BenchResult:
    base, url = endpoint_url(cfg.url, cfg.api)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # one connection per slot, kept alive; the per-request bound is asyncio.timeout in _one
    connector = aiohttp.TCPConnector(limit=cfg.concurrency + 1)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(cfg.timeout_s, 10.0))
    started_at = utc_now()
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:
        listed = await _preflight(session, base, url, cfg.timeout_s)
        model = cfg.model or (listed if cfg.api != "sglang-generate" else None)
        load = _Load(cfg, session, url, model, stop)
        warm = await load.warm_up(cfg.warmup_requests) if cfg.warmup_requests else []
        cpu0, loop_cpu0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
        deadline = t0 + (cfg.duration_s or MAX_DURATION_S)
        records = await load.send(range(cfg.num_requests or MAX_REQUESTS), cfg.rate, deadline)
        duration = time.perf_counter() - t0
        usage = ClientUsage(cpu_s=time.process_time() - cpu0, loop_cpu_s=time.thread_time() - loop_cpu0,
                            duration_s=duration, requests=len(records))
    return BenchResult(config=cfg, records=records, duration_s=duration, started_at=started_at, model=model,
                       client=usage, warmup_failed=sum(1 for r in warm if not r.success))


def run_bench(url: str, *, model: str | None = None, concurrency: int | None = None, rate: float | None = None,
              arrival: str = "poisson", duration_s: float | None = None, num_requests: int | None = None,
              prompt_tokens: int = 128, output_tokens: int = 64, api: Api = "openai-chat",
              timeout_s: float = 30.0, api_key: str | None = None, seed: int = 0, warmup: int = 0,
              stop: threading.Event | None = None) -> BenchResult:
    """Send a bounded streaming load to `url` and measure it (see the module docstring).

    Closed loop without `rate` (`concurrency` requests in flight, 8 by default); open loop with
    it (Poisson or fixed arrivals, at most `concurrency` in flight, `MAX_CONCURRENCY` by
    default). `warmup` requests go first and are not counted. Stops sending at `duration_s` or
    after `num_requests`, whichever comes first (only `duration_s` of 30 s when neither is
    given), or when `stop` is set (for running it in a thread as background traffic). Raises
    BenchError on bad arguments or when nothing answers at `url`; failed requests are counted
    in the result, not raised.
    """
    if concurrency is None:
        concurrency = MAX_CONCURRENCY if rate is not None else DEFAULT_CONCURRENCY
    _check(concurrency, rate, arrival, duration_s, num_requests, prompt_tokens, output_tokens, timeout_s, warmup)
    if duration_s is None and num_requests is None:
        duration_s = DEFAULT_DURATION_S
    endpoint_url(url, api)  # validate before starting a loop
    cfg = BenchConfig(url=url, api=api, model=model, concurrency=concurrency, rate=rate, arrival=arrival,
                      duration_s=duration_s, num_requests=num_requests, prompt_tokens=prompt_tokens,
                      output_tokens=output_tokens, timeout_s=timeout_s, seed=seed, warmup_requests=warmup)
    return asyncio.run(_run(cfg, api_key, stop))

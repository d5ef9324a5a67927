"""The simulator's HTTP side: SGLang 0.5.23's routes, auth and error shapes on aiohttp's
low-level server, one event loop per simulator, so a stream costs a coroutine, not a thread.

Framing follows uvicorn (SGLang's server): a request it cannot frame (a `Content-Length` that is
no number, a broken chunked body) is the plain-text 400 ``Invalid HTTP request received.`` and a
closed connection; a body over 64 MiB is a 413, unread; a connection idle for `idle_timeout_s`
(between requests, or stalled mid-body) is closed.

`SimServer` keeps the surface of the stdlib server this replaced (`serve_forever` in a thread,
`server_address`, `shutdown`, `server_close`), so callers start one the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

import prometheus_client
from aiohttp import web
from aiohttp.http import HttpProcessingError
from prometheus_client import generate_latest

from infraplan.serving.sim_engine import (DEFAULT_MODEL_NAME, ENGINE, LOAD_SECTIONS, SGLANG_API_VERSION, BadRequest,
                                          SimConfig, Simulator, chat_prompt, count_tokens, usage_info)
from infraplan.serving.sim_requests import (MAX_BODY_BYTES, UNFRAMED, ChatCompletionRequest, CompletionRequest,
                                            GenerateRequest, Rejected, checked, http_error, parse_json)

SERVER_HEADER = f"{ENGINE}/{SGLANG_API_VERSION}"
#: pending connections the kernel queues: a load test opens hundreds at once
LISTEN_BACKLOG = 1024
#: how long `shutdown` lets requests in flight run before cancelling them (SIGTERM exits promptly)
SHUTDOWN_GRACE_S = 0.1
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


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


# -- responses ------------------------------------------------------------------------------------
def _response(body: bytes, status: int, content_type: str) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": content_type, "Server": SERVER_HEADER})


def _json(body: Any, status: int = 200) -> web.Response:
    return _response(json.dumps(body).encode(), status, _JSON)


def _text(text: str, status: int = 200, content_type: str = _TEXT) -> web.Response:
    return _response(text.encode(), status, content_type)


def _empty(status: int) -> web.Response:
    return web.Response(status=status, headers={"Server": SERVER_HEADER})


def _openai_error(status: int, message: str, kind: str) -> web.Response:
    return _json({"object": "error", "message": message, "type": kind, "param": None, "code": status}, status)


def _rejected(r: Rejected) -> web.Response:
    resp = _text(r.body, r.status) if isinstance(r.body, str) else _json(r.body, r.status)
    if r.close:
        resp.force_close()
    return resp


def _closing(resp: web.StreamResponse, close: bool) -> web.StreamResponse:
    if close:
        resp.force_close()
    return resp


def _sse(body: Any) -> bytes:
    return b"data: " + (body if isinstance(body, bytes) else json.dumps(body).encode()) + b"\n\n"


class _Stream:
    """One SSE response (``data: <json>`` events, chunked), headers sent at once as uvicorn does."""

    def __init__(self, resp: web.StreamResponse):
        self.resp = resp

    @classmethod
    async def open(cls, request: web.BaseRequest, first: Any = None) -> _Stream:
        """The response started: its headers sent, with the `first` event when given (one write)."""
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream", "Server": SERVER_HEADER})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"" if first is None else _sse(first))
        return cls(resp)

    async def event(self, body: Any) -> None:
        await self.resp.write(_sse(body))

    async def end(self) -> web.StreamResponse:
        await self.event(b"[DONE]")
        await self.resp.write_eof()
        return self.resp


# -- routes ---------------------------------------------------------------------------------------
Route = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class _RouteSpec:
    methods: frozenset[str]
    level: AuthLevel
    handler: Route


class SimApp:
    """Routes of SGLang's http_server, answered by a `Simulator`."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        get, post = frozenset({"GET"}), frozenset({"POST", "PUT"})
        normal, admin = AuthLevel.NORMAL, AuthLevel.ADMIN_OPTIONAL

        def info(make: Callable[[], Any]) -> Route:
            async def handler(request: web.BaseRequest) -> web.StreamResponse:
                return _json(make())
            return handler

        def generation(run: Callable[[web.BaseRequest, dict[str, Any]], Awaitable[web.StreamResponse]],
                       model: type) -> Route:
            return functools.partial(self._generation, run, model)

        # path -> (methods, auth level, handler), as http_server.py declares them
        self.routes: dict[str, _RouteSpec] = {path: _RouteSpec(*spec) for path, spec in {
            "/ready": (get, normal, self._ready),
            "/health": (get, normal, self._health),
            "/health_generate": (get, normal, self._health),
            "/ping": (get, normal, self._ready),
            "/model_info": (get, normal, info(sim.model_info)),
            "/get_model_info": (get, normal, info(sim.model_info)),
            "/server_info": (get, normal, info(sim.server_info)),
            "/get_server_info": (get, normal, info(sim.server_info)),
            "/v1/models": (get, normal, info(sim.models)),
            "/v1/loads": (get, normal, self._loads),
            "/metrics": (get, normal, self._metrics),
            "/flush_cache": (frozenset({"GET", "POST"}), admin, self._flush_cache),
            "/generate": (post, normal, generation(self._generate, GenerateRequest)),
            "/v1/completions": (frozenset({"POST"}), normal, generation(self._completions, CompletionRequest)),
            "/v1/chat/completions": (frozenset({"POST"}), normal, generation(self._chat, ChatCompletionRequest)),
        }.items()}

    # -- dispatch -------------------------------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one request; as Starlette, a failure is a 500, never a dropped connection."""
        try:
            return await self._route(request)
        except Rejected as r:
            return _rejected(r)
        except ConnectionError:
            raise  # the client went away: aiohttp drops the connection
        except Exception:  # noqa: BLE001
            if request.writer.output_size:  # a stream had started: cut it, as a server must
                raise ConnectionResetError("the response had started") from None
            resp = _text("Internal Server Error", 500)
            resp.force_close()
            return resp

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        method = request.method
        path = request.raw_path.split("?", 1)[0]
        route = self.routes.get(path)
        if route is None and path.startswith("/v1/models/"):
            route = _RouteSpec(frozenset({"GET"}), AuthLevel.NORMAL,
                               functools.partial(self._model, path.removeprefix("/v1/models/")))
        level = route.level if route is not None else AuthLevel.NORMAL
        denied = auth_status(method, path, request.headers.get("Authorization"), self.sim.api_key,
                             self.sim.admin_api_key, level)
        if denied is not None:
            close = method != "GET" and await self._drain(request)
            return _closing(_json({"error": "Unauthorized"}, denied), close)
        if route is None or method not in route.methods:
            close = method != "GET" and await self._drain(request)
            if route is None:
                return _closing(_json({"detail": "Not Found"}, 404), close)
            return _closing(_json({"detail": "Method Not Allowed"}, 405), close)
        return await route.handler(request)

    # -- request bodies -------------------------------------------------------------------------
    async def _body(self, request: web.BaseRequest) -> Any:
        """The request body as JSON, read whole so the connection stays usable; `Rejected` when it
        cannot be framed, is too large, stalls or cannot be parsed (answered as SGLang answers it)."""
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return parse_json(await self._read(request, None))  # smg streams the bodies it will not retry
        length = request.content_length or 0
        if length > MAX_BODY_BYTES:
            raise http_error(413, f"request body of {length} bytes is over the limit of {MAX_BODY_BYTES}", close=True)
        return parse_json(await self._read(request, length) if length else b"")

    async def _read(self, request: web.BaseRequest, length: int | None) -> bytes:
        """`length` bytes of body (None: a chunked body to its end), each wait bounded by the idle timeout."""
        idle = self.sim.cfg.idle_timeout_s
        parts: list[bytes] = []
        total = 0
        while length is None or total < length:
            try:
                async with asyncio.timeout(idle):
                    chunk = await request.content.readany()
            except TimeoutError:
                if length is None:
                    raise http_error(400, f"request body stalled for {idle:g}s", close=True) from None
                break
            except HttpProcessingError:  # a malformed chunk
                raise Rejected(400, UNFRAMED, close=True) from None
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                raise http_error(413, f"request body is over the limit of {MAX_BODY_BYTES} bytes", close=True)
            parts.append(chunk)
        if length is not None and total < length:  # the client stopped sending, or stalled past the idle timeout
            raise http_error(400, f"request body ended before its Content-Length of {length} bytes", close=True)
        return b"".join(parts)

    async def _drain(self, request: web.BaseRequest) -> bool:
        """Read and drop a body no route looks at; whether the connection must close (it was malformed)."""
        try:
            await self._body(request)
        except Rejected as r:
            return r.close
        return False

    # -- routes ---------------------------------------------------------------------------------
    async def _ready(self, request: web.BaseRequest) -> web.StreamResponse:
        """`/ready` (and `/ping`): at once, no generation."""
        return _empty(200 if self.sim.ready() else 503)

    async def _health(self, request: web.BaseRequest) -> web.StreamResponse:
        """`/health` and `/health_generate`: 503 at once while starting, else a one-token generation."""
        if not self.sim.ready():
            return _empty(503)
        await self.sim.health_wait()
        return _empty(200)

    async def _model(self, name: str, request: web.BaseRequest) -> web.StreamResponse:
        if name != self.sim.cfg.served_model_name:
            return _json({"error": {"message": f"The model '{name}' does not exist", "type": "invalid_request_error",
                                    "param": "model", "code": "model_not_found"}}, 404)
        return _json({**self.sim.model_card(), "id": name, "root": name})

    async def _loads(self, request: web.BaseRequest) -> web.StreamResponse:
        t0 = time.perf_counter()
        q = {k: v[-1] for k, v in parse_qs(request.query_string).items()}
        include = {s.strip() for s in q["include"].split(",")} if q.get("include") else None
        if include is not None and not include <= LOAD_SECTIONS:
            bad = include - LOAD_SECTIONS
            return _json({"detail": f"Invalid include sections: {bad}. Valid options: {sorted(LOAD_SECTIONS)}"}, 400)
        body = self.sim.loads(include)
        if q.get("dp_rank") not in (None, "0"):
            body["loads"] = []
        self.sim.metrics.get_loads_duration.observe(time.perf_counter() - t0)
        if q.get("format") == "prometheus":
            return _text(_loads_exposition(body["loads"]), content_type="text/plain; version=0.0.4; charset=utf-8")
        return _json(body)

    async def _flush_cache(self, request: web.BaseRequest) -> web.StreamResponse:
        close = request.method == "POST" and await self._drain(request)
        return _closing(_text("Cache flushed.\nPlease check backend logs for more details. (When there are running or "
                              "waiting requests, the operation will not be performed.)\n"), close)

    async def _metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        return _response(generate_latest(self.sim.metrics.registry), 200, prometheus_client.CONTENT_TYPE_LATEST)

    # -- generation -----------------------------------------------------------------------------
    async def _generation(self, run: Callable[[web.BaseRequest, dict[str, Any]], Awaitable[web.StreamResponse]],
                          model: type, request: web.BaseRequest) -> web.StreamResponse:
        body = checked(model, await self._body(request))
        if not self.sim.ready():
            return _openai_error(503, "the simulator is still starting (--startup-s)", "ServiceUnavailable")
        try:
            return await run(request, body)
        except BadRequest as e:
            return _openai_error(400, str(e), "BadRequestError")

    def _max_tokens(self, value: Any, default: int) -> int:
        if value is None:
            return default
        limit = self.sim.context_length
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
            raise BadRequest(f"max tokens must be an integer between 0 and {limit}, got {value!r}")
        return value

    async def _generate(self, request: web.BaseRequest, body: dict[str, Any]) -> web.StreamResponse:
        sp = body.get("sampling_params") or {}
        if isinstance(sp, list):  # one per prompt in SGLang; the simulator runs them all alike
            sp = sp[0] if sp else {}
        max_new = self._max_tokens(sp.get("max_new_tokens"), 128)  # SGLang's SamplingParams default
        text = body.get("text")
        stream = bool(body.get("stream"))
        sim = self.sim
        if isinstance(text, list):
            if stream:
                return _json({"error": {"message": "the simulator streams one prompt at a time"}}, 400)
            if any(sim.draw_failure() for _ in text):
                return _json({"error": {"message": "simulated failure (--error-rate)"}}, 500)
            results = await asyncio.gather(*(self._generate_one(request, t, None, max_new, stream=False, rid=None)
                                             for t in text))
            return _json(results)
        if sim.draw_failure(stream):
            return _json({"error": {"message": "simulated failure (--error-rate)"}}, 500)
        out = await self._generate_one(request, text or "", body.get("input_ids"), max_new, stream=stream,
                                       rid=body.get("rid"))
        return out if isinstance(out, web.StreamResponse) else _json(out)

    async def _generate_one(self, request: web.BaseRequest, text: str, input_ids: list[int] | None, max_new: int, *,
                            stream: bool, rid: str | None) -> dict[str, Any] | web.StreamResponse:
        """One native /generate request: its streamed response, or the body to answer."""
        sim = self.sim
        prompt = text if input_ids is None else " ".join(map(str, input_ids))
        n_prompt = len(input_ids) if input_ids is not None else count_tokens(text)
        rid = rid or uuid.uuid4().hex
        with_timing = bool(sim.cfg.server_args.get("enable_metrics"))
        timing: dict[str, float] = {}
        out_text, ids = "", []

        def payload(finished: bool) -> dict[str, Any]:
            # tokenizer_manager.py::_handle_batch_output, then _wait_one_response on the last one
            meta: dict[str, Any] = {
                "id": rid,
                "finish_reason": {"type": "length", "length": max_new} if finished else None,
                "prompt_tokens": n_prompt,
                "weight_version": sim.weight_version,
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

        sse = await _Stream.open(request) if stream else None
        async with contextlib.aclosing(sim.run(prompt, n_prompt, max_new, stream=stream, timing=timing)) as tokens:
            async for tid, piece in tokens:
                out_text += piece
                ids.append(tid)
                if sse is not None and len(ids) < max_new:
                    await sse.event(payload(False))
        if sse is None:
            return payload(True)
        await sse.event(payload(True))
        return await sse.end()

    async def _openai(self, request: web.BaseRequest, body: dict[str, Any], prompt: str,
                      chat: bool) -> web.StreamResponse:
        sim = self.sim
        stream = bool(body.get("stream"))
        if sim.draw_failure(stream):
            return _openai_error(500, "simulated failure (--error-rate)", "InternalServerError")
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

        if not stream:
            async with contextlib.aclosing(sim.run(prompt, n_prompt, max_new)) as tokens:
                text = "".join([piece async for _, piece in tokens])
            if chat:  # ChatMessage drops tool_calls when None
                choice = {"index": 0, "message": {"role": "assistant", "content": text, "reasoning_content": None},
                          "logprobs": None, "finish_reason": "length", "matched_stop": None}
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "matched_stop": None}
            return _json({"id": rid, "object": obj, "created": created, "model": model, "choices": [choice],
                          "usage": usage_info(n_prompt, max_new), "metadata": {"weight_version": sim.weight_version}})
        sse = await _Stream.open(request, chat_chunk({"role": "assistant", "content": ""}) if chat else None)
        n = 0
        async with contextlib.aclosing(sim.run(prompt, n_prompt, max_new, stream=True)) as tokens:
            async for _, piece in tokens:
                n += 1
                if chat:
                    await sse.event(chat_chunk({"content": piece}))
                else:
                    await sse.event({"id": rid, "object": obj, "created": created, "model": model,
                                     "choices": [{"index": 0, "text": piece, "logprobs": None,
                                                  "finish_reason": "length" if n == max_new else None,
                                                  "matched_stop": None}], "usage": None})
        if chat:
            await sse.event(chat_chunk({}, "length"))
        if usage_wanted:
            final = {"id": rid, "object": obj + (".chunk" if chat else ""), "created": created, "model": model,
                     "choices": [], "usage": usage_info(n_prompt, n)}
            if not chat:  # serving_completions.py dumps this one with exclude_none=True
                final["usage"] = {k: v for k, v in final["usage"].items() if v is not None}
            await sse.event(final)
        return await sse.end()

    async def _completions(self, request: web.BaseRequest, body: dict[str, Any]) -> web.StreamResponse:
        prompt = body.get("prompt", "")
        return await self._openai(request, body, prompt if isinstance(prompt, str) else " ".join(map(str, prompt)),
                                  chat=False)

    async def _chat(self, request: web.BaseRequest, body: dict[str, Any]) -> web.StreamResponse:
        return await self._openai(request, body, chat_prompt(body.get("messages") or []), chat=True)


def _loads_exposition(loads: list[dict[str, Any]]) -> str:
    """`/v1/loads?format=prometheus`: each numeric field a gauge labelled by its DP rank."""
    lines = []
    prefixes = {"disaggregation": "disagg", "speculative": "spec"}
    for load in loads:
        rank = load["dp_rank"]
        for key, value in load.items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    if isinstance(v, (int, float)):
                        lines += [f"# TYPE sglang_{prefixes.get(key, key)}_{sub} gauge",
                                  f'sglang_{prefixes.get(key, key)}_{sub}{{dp_rank="{rank}"}} {v}']
            elif isinstance(value, (int, float)) and key != "dp_rank":
                lines += [f"# TYPE sglang_{key} gauge", f'sglang_{key}{{dp_rank="{rank}"}} {value}']
    return "\n".join(lines) + "\n"


# -- the server -----------------------------------------------------------------------------------
class _Connection(web.RequestHandler):
    """aiohttp's connection handler, answering unframeable requests as uvicorn does, quietly."""

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status == 400 and not request.writer.output_size:  # the parser gave up on the request
            resp = _text(UNFRAMED, 400)
            resp.force_close()
            return resp
        return super().handle_error(request, status, exc, message)

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        pass  # a malformed request or a client gone mid-stream is not the simulator's error


class SimServer:
    """A bound simulator with the stdlib server's surface: `serve_forever()` (in a thread of its
    own; it runs the event loop), `server_address`, `shutdown()` (from another thread; waits
    for `serve_forever` to return) and `server_close()`."""

    def __init__(self, sim: Simulator, sock: socket.socket):
        self.sim = sim
        self.socket = sock
        self.server_address: tuple[str, int] = sock.getsockname()[:2]
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._stopping = False
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until `shutdown()`; `poll_interval` is accepted for the stdlib's signature only."""
        try:
            # the runner's close cancels and awaits what shutdown's grace left running
            with asyncio.Runner() as runner:
                with self._lock:
                    if self._stopping:
                        return
                    self._loop = runner.get_loop()
                try:
                    runner.run(self._serve())
                finally:
                    with self._lock:
                        self._loop = None
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop `serve_forever` (requests in flight get `SHUTDOWN_GRACE_S`) and wait for it."""
        with self._lock:
            self._stopping = True
            loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._stop.set)
        self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket."""
        self.socket.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        app = SimApp(self.sim)
        web_server = web.Server(app.handle)
        idle = self.sim.cfg.idle_timeout_s

        def connection() -> _Connection:
            # lingering_time=0: a body left unread closes the connection instead of being read for 10 s
            return _Connection(web_server, loop=loop, keepalive_timeout=idle, lingering_time=0, access_log=None)

        listener = await loop.create_server(connection, sock=self.socket, backlog=LISTEN_BACKLOG)
        try:
            await self._stop.wait()
        finally:
            listener.close()
            await web_server.shutdown(SHUTDOWN_GRACE_S)


def make_server(cfg: SimConfig) -> SimServer:
    """A bound (not yet serving) simulator server; `cfg.port` becomes the bound port (`--port 0`)."""
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.create_server((cfg.host, cfg.port), family=family, backlog=LISTEN_BACKLOG)
    server = SimServer(Simulator(cfg), sock)
    cfg.port = server.server_address[1]
    return server

"""The SGLang 0.5.23 HTTP contract: one suite, three servers.

The same client calls run against (a) a live `infraplan.serving.sim` process on
127.0.0.1, (b) SGLang 0.5.23 responses reconstructed from its source
(tests/fixtures/sglang, see the README there) served by httpx.MockTransport with
SGLang's auth rules, and (c) opt-in, a real SGLang server: set
``INFRAPLAN_LIVE_SGLANG_URL`` (and ``INFRAPLAN_LIVE_SGLANG_API_KEY`` /
``INFRAPLAN_LIVE_SGLANG_ADMIN_API_KEY`` when it was started with keys); skipped without it.
Then sim-only behaviour: streaming, pacing, error rate, startup delay, SIGTERM.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from infraplan.errors import ProviderError, ResourceNotFound, TransientProviderError
from infraplan.serving import sglang_client as sc
from infraplan.serving.sglang_client import SGLangClient, histogram_mean, metric_total, parse_metrics
from helpers.paths import FIXTURES as TEST_FIXTURES
from helpers.timing import within

FIXTURES = TEST_FIXTURES / "sglang"
API_KEY = "sk-fixture-not-a-real-key"  # the keys the recorded server was launched with
ADMIN_KEY = "sk-admin-fixture-not-a-real-key"
LIVE_URL = os.environ.get("INFRAPLAN_LIVE_SGLANG_URL")
SENSITIVE = "(sensitive)"  # what the client puts in place of a secret


# -- a live sim process ---------------------------------------------------------


@dataclass
class SimProc:
    proc: subprocess.Popen
    base_url: str
    banner: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def start_sim(*extra: str, model: str = "hf://org/tiny-model", served: str = "tiny", revision: str = "abc123",
              wait_ready: bool = True) -> SimProc:
    """Start the sim on a free port (--port 0) and read the port from its banner."""
    cmd = [sys.executable, "-m", "infraplan.serving.sim", "--host", "127.0.0.1", "--port", "0",
           "--model-path", model, "--revision", revision, "--served-model-name", served, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sim = SimProc(proc, "", "")
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        if not ready:
            raise RuntimeError("sim printed no banner within 10 s")
        sim.banner = proc.stdout.readline().strip()
        if "listening on http://" not in sim.banner:
            raise RuntimeError(f"unexpected sim output: {sim.banner!r} {proc.stderr.read() if proc.poll() is not None else ''}")
        sim.base_url = sim.banner.split("listening on ", 1)[1].split()[0]
        if wait_ready:
            deadline = time.monotonic() + 10
            while httpx.get(sim.base_url + "/ready").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("sim never became ready")
                time.sleep(0.02)
    except BaseException:
        sim.stop()
        raise
    return sim


@pytest.fixture(scope="module")
def sim_server():
    sim = start_sim("--ttft-ms", "2", "--tpot-ms", "1", "--instance-id", "inst-1",
                    "--server-args-json", json.dumps({"api_key": API_KEY, "admin_api_key": ADMIN_KEY, "tp_size": 1,
                                                      "enable_metrics": True}))
    yield sim
    sim.stop()


# -- recorded SGLang responses --------------------------------------------------

ADMIN_ROUTES = {"/flush_cache"}  # @auth_level(AuthLevel.ADMIN_OPTIONAL) among the routes served here


def recorded_handler(*, missing: set[str] = frozenset()):
    """A MockTransport handler answering like the recorded SGLang 0.5.23 server."""
    routes = {
        ("GET", "/model_info"): "model_info.json",
        ("GET", "/get_model_info"): "model_info.json",
        ("GET", "/server_info"): "server_info.json",
        ("GET", "/get_server_info"): "server_info.json",
        ("GET", "/v1/models"): "v1_models.json",
        ("GET", "/v1/loads"): "v1_loads.json",
        ("POST", "/generate"): "generate.json",
        ("POST", "/v1/chat/completions"): "v1_chat_completions.json",
        ("POST", "/v1/completions"): "v1_completions.json",
    }

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        # srt/utils/auth.py::decide_request_auth, before routing (an unknown path is a NORMAL one)
        if not path.startswith(("/health", "/ready", "/metrics")):
            key = ADMIN_KEY if path in ADMIN_ROUTES else API_KEY
            if request.headers.get("authorization") != f"Bearer {key}":
                return httpx.Response(401, json={"error": "Unauthorized"})
        if path in missing:
            return httpx.Response(404, json={"detail": "Not Found"})
        if path in ("/health", "/health_generate", "/ready"):
            return httpx.Response(200)
        if path == "/metrics":
            return httpx.Response(200, text=(FIXTURES / "metrics.txt").read_text(),
                                  headers={"content-type": "text/plain; version=0.0.4; charset=utf-8"})
        if path == "/flush_cache":
            return httpx.Response(200, text="Cache flushed.\n")
        name = routes.get((request.method, path))
        if name is None:
            return httpx.Response(404, json={"detail": "Not Found"})
        body = json.loads((FIXTURES / name).read_text())
        if path == "/v1/loads" and request.url.params.get("include") == "core":
            body["loads"] = [{k: v for k, v in load.items() if not isinstance(v, dict)} for load in body["loads"]]
        return httpx.Response(200, json=body)

    return handle


# -- the parametrized API under test --------------------------------------------


@dataclass
class Api:
    kind: str
    base_url: str
    transport: httpx.BaseTransport | None
    served_name: str | None  # None: a live server, whatever it serves
    model_path: str | None
    revision: str | None
    api_key: str | None = API_KEY
    admin_key: str | None = ADMIN_KEY

    def client(self, api_key: str | None | bool = True, **kw) -> SGLangClient:
        key = self.api_key if api_key is True else api_key
        return SGLangClient(self.base_url, api_key=key, transport=self.transport, timeout=30.0, **kw)

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, transport=self.transport, headers=headers, timeout=30.0,
                            trust_env=False)

    @property
    def exact(self) -> bool:
        """Label sets and key sets are compared exactly (a live server may add dp_rank, priority, ...)."""
        return self.kind != "live"


LIVE = pytest.param("live", marks=pytest.mark.live)  # opt-in: INFRAPLAN_LIVE_SGLANG_URL


@pytest.fixture(params=["sim", "recorded", LIVE])
def api(request) -> Api:
    if request.param == "sim":
        sim = request.getfixturevalue("sim_server")
        return Api("sim", sim.base_url, None, "tiny", "org/tiny-model", "abc123")
    if request.param == "recorded":
        return Api("recorded", "http://sglang.test:30000", httpx.MockTransport(recorded_handler()),
                   "qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct", "7ae557604adf67be50417f59c2c2f167def9a775")
    if not LIVE_URL:
        pytest.skip("set INFRAPLAN_LIVE_SGLANG_URL to run the contract against a real SGLang server")
    return Api("live", LIVE_URL, None, None, None, None, os.environ.get("INFRAPLAN_LIVE_SGLANG_API_KEY"),
               os.environ.get("INFRAPLAN_LIVE_SGLANG_ADMIN_API_KEY"))


def served_name(api: Api, c: SGLangClient) -> str:
    return api.served_name or c.models()["data"][0]["id"]


def test_health_ready_and_health_generate(api):
    with api.client() as c:
        assert c.ready() is True
        assert c.ready_or_health() is True
        assert c.health() is True
        assert c.health_generate() is True


@pytest.mark.parametrize("api", ["sim", LIVE], indirect=True)  # a recorded body has no timing
def test_ready_answers_at_once_and_health_runs_a_generation_that_costs_a_second(api):
    with api.http() as h:
        t0 = time.monotonic()
        assert h.get("/ready").status_code == 200
        ready_s = time.monotonic() - t0
        t0 = time.monotonic()
        assert h.get("/health").status_code == 200
        health_s = time.monotonic() - t0
        t0 = time.monotonic()
        assert h.get("/health_generate").status_code == 200
        generate_s = time.monotonic() - t0
    assert ready_s < within(0.3)
    assert health_s >= 0.95 and generate_s >= 0.95  # SGLang sleeps 1 s, then looks for the one token


def test_model_info(api):
    with api.client() as c:
        info = c.model_info()
        name = served_name(api, c)
    if api.model_path:
        assert info["model_path"] == api.model_path
    assert info["served_model_name"] == name
    assert info["is_generation"] is True
    assert isinstance(info["weight_version"], str)
    assert isinstance(info["tokenizer_path"], str)
    assert isinstance(info["architectures"], list)
    assert {"load_format", "reasoning_parser", "tool_call_parser", "disaggregation_mode"} <= set(info)
    assert "revision" not in info  # 0.5.23 reports it in /server_info only


def test_revision_comes_from_server_info(api):
    with api.client() as c:
        info = c.server_info()
        rev = c.revision()
    assert rev == info["revision"]
    if api.revision:
        assert rev == api.revision


def test_server_info_reports_identity_and_redacts_every_secret(api):
    with api.client() as c:
        info = c.server_info()
        name = served_name(api, c)
    if api.model_path:
        assert info["model_path"] == api.model_path
    assert info["served_model_name"] == name
    assert isinstance(info["port"], int) and isinstance(info["tp_size"], int)
    assert isinstance(info["max_total_num_tokens"], int) and isinstance(info["max_req_input_len"], int)
    assert isinstance(info["launch_command"], str) and isinstance(info["internal_states"], list)
    assert {"startup_time", "version", "frontend", "kv_events", "admin_api_key"} <= set(info)
    if api.api_key:
        assert info["api_key"] == SENSITIVE and f"--api-key {SENSITIVE}" in info["launch_command"]
        assert all(s.get("api_key") == SENSITIVE for s in info["internal_states"])
    if api.admin_key:
        assert info["admin_api_key"] == SENSITIVE and f"--admin-api-key {SENSITIVE}" in info["launch_command"]
    text = json.dumps(info)
    for secret in (api.api_key, api.admin_key):
        if secret:
            assert secret not in text


def test_models(api):
    with api.client() as c:
        models = c.models()
        name = served_name(api, c)
        with api.http(api.api_key) as h:
            one = h.get(f"/v1/models/{name}") if api.kind != "recorded" else None
    assert models["object"] == "list"
    card = models["data"][0]
    assert set(card) == {"id", "object", "created", "owned_by", "root", "parent", "max_model_len"}
    assert card["id"] == name and card["object"] == "model" and card["root"] == name
    assert isinstance(card["max_model_len"], int)
    if one is not None:
        assert one.status_code == 200 and one.json()["id"] == name


def test_old_routes_answer_like_new_ones(api):
    with api.client() as c:
        new = c.model_info()
    with api.http(api.api_key) as h:
        old = h.get("/get_model_info").json()
        old_server = h.get("/get_server_info").json()
    assert old == new
    assert old_server["served_model_name"] == new["served_model_name"]


META_INFO = {"id", "finish_reason", "prompt_tokens", "weight_version", "num_retractions", "reasoning_tokens",
             "completion_tokens", "cached_tokens", "e2e_latency"}


def test_generate(api):
    with api.client() as c:
        out = c.generate("The capital of France is", max_new_tokens=11, ignore_eos=True)
    meta = out["meta_info"]
    assert isinstance(out["text"], str) and out["text"]
    assert all(isinstance(t, int) for t in out["output_ids"])
    assert META_INFO <= set(meta) and "total_retractions" not in meta  # renamed num_retractions in 0.5.23
    assert meta["completion_tokens"] == len(out["output_ids"]) == 11
    assert meta["finish_reason"] == {"type": "length", "length": 11}
    assert isinstance(meta["prompt_tokens"], int) and isinstance(meta["id"], str)
    assert meta["e2e_latency"] > 0


def test_chat_and_completion(api):
    with api.client() as c:
        name = served_name(api, c)
        chat = c.chat([{"role": "user", "content": "Hello"}], max_tokens=10, model=name, ignore_eos=True)
        comp = c.completion("The capital of France is", max_tokens=16, model=name, ignore_eos=True)
    msg = chat["choices"][0]["message"]
    assert chat["object"] == "chat.completion" and chat["model"] == name
    assert set(msg) == {"role", "content", "reasoning_content"}  # tool_calls dropped when null
    assert msg["role"] == "assistant" and isinstance(msg["content"], str)
    assert chat["choices"][0]["finish_reason"] in ("stop", "length")
    for body, n in ((chat, 10), (comp, 16)):
        u = body["usage"]
        assert set(u) == {"prompt_tokens", "total_tokens", "completion_tokens", "prompt_tokens_details",
                          "reasoning_tokens", "completion_tokens_details"}
        assert u["completion_tokens"] == n
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
        assert isinstance(body["metadata"]["weight_version"], str)
    assert comp["object"] == "text_completion" and isinstance(comp["choices"][0]["text"], str)


CORE_LOAD = {"timestamp", "dp_rank", "num_running_reqs", "num_waiting_reqs", "num_waiting_uncached_tokens",
             "num_used_tokens", "num_total_tokens", "num_active_tokens", "num_prealloc_ready_tokens",
             "max_total_num_tokens", "max_running_requests", "token_usage", "gen_throughput", "cache_hit_rate",
             "utilization", "total_prefill_uncached_tokens", "total_prefill_busy_us", "decode_moments"}


def test_v1_loads_replaces_get_load(api):
    with api.client() as c:
        loads = c.loads()
        core = c.loads(include="core")
        with pytest.raises(ResourceNotFound):
            c._request("GET", "/get_load")  # gone in 0.5.23
    assert {"timestamp", "version", "accelerator", "num_accelerators", "loads"} <= set(loads)
    (load,) = loads["loads"][:1]
    assert CORE_LOAD <= set(load) and load["dp_rank"] == 0
    assert {"memory", "disaggregation", "queues"} <= set(load)
    assert set(load["memory"]) == {"weight_gb", "kv_cache_gb", "graph_gb", "token_capacity"}
    assert set(core["loads"][0]) == CORE_LOAD if api.exact else CORE_LOAD <= set(core["loads"][0])


TOKENIZER = {"model_name", "engine_type"}
SCHEDULER = {"model_name", "engine_type", "tp_rank", "pp_rank", "moe_ep_rank"}
LABELS = {  # sample name -> label names (srt/observability/metrics_collector.py)
    sc.TIME_TO_FIRST_TOKEN + "_bucket": TOKENIZER | {"is_streaming", "le"},
    sc.REQUEST_TIME_PER_OUTPUT_TOKEN + "_bucket": TOKENIZER | {"is_streaming", "le"},
    sc.E2E_REQUEST_LATENCY + "_count": TOKENIZER | {"is_streaming"},
    sc.INTER_TOKEN_LATENCY + "_bucket": TOKENIZER | {"le"},
    sc.NUM_REQUESTS: TOKENIZER | {"is_streaming"},
    sc.PROMPT_TOKENS: TOKENIZER | {"is_streaming"},
    sc.GENERATION_TOKENS: TOKENIZER | {"is_streaming"},
    sc.NUM_ABORTED_REQUESTS: TOKENIZER,
    sc.NUM_RUNNING_REQS: SCHEDULER,
    sc.NUM_QUEUE_REQS: SCHEDULER,
    sc.TOKEN_USAGE: SCHEDULER,
    sc.GEN_THROUGHPUT: SCHEDULER,
}


def test_metrics_have_sglang_0_5_23_names_and_label_sets(api):
    with api.client() as c:
        name = served_name(api, c)
        c.generate("warm the histograms", max_new_tokens=3, ignore_eos=True)
        metrics = c.metrics()
    for sample, labels in LABELS.items():
        assert sample in metrics, sample
        for s in metrics[sample]:
            assert (set(s.labels) == labels) if api.exact else (set(s.labels) >= labels), (sample, s.labels)
    assert "sglang:time_per_output_token_seconds_count" not in metrics  # the 0.4.x name is gone
    for hist in (sc.TIME_TO_FIRST_TOKEN, sc.INTER_TOKEN_LATENCY, sc.E2E_REQUEST_LATENCY,
                 sc.REQUEST_TIME_PER_OUTPUT_TOKEN):
        assert metric_total(metrics, hist + "_count", model_name=name) >= 1
        assert histogram_mean(metrics, hist, model_name=name) > 0
        assert any(s.labels.get("le") == "+Inf" for s in metrics[hist + "_bucket"])
    for counter in (sc.NUM_REQUESTS, sc.PROMPT_TOKENS, sc.GENERATION_TOKENS):
        assert metric_total(metrics, counter, model_name=name, is_streaming="false") >= 1
    for gauge in (sc.NUM_RUNNING_REQS, sc.NUM_QUEUE_REQS, sc.GEN_THROUGHPUT, sc.TOKEN_USAGE):
        sample = metrics[gauge][0]
        assert sample.labels[sc.MODEL_NAME_LABEL] == name and sample.labels["engine_type"] == "unified"
    assert not any(n.endswith("_created") for n in metrics)  # SGLang's multiprocess export has none


GUARDED = [("GET", "/model_info"), ("GET", "/server_info"), ("GET", "/v1/models"), ("GET", "/v1/loads"),
           ("GET", "/get_load"), ("POST", "/generate"), ("POST", "/v1/chat/completions"), ("GET", "/no_such_route")]


def test_the_api_key_guards_every_route_but_health_ready_and_metrics(api):
    if not api.api_key:
        pytest.skip("the live server runs without --api-key")
    with api.http() as h:
        for path in ("/health", "/health_generate", "/ready", "/metrics"):
            assert h.get(path).status_code == 200, path
        for method, path in GUARDED:
            resp = h.request(method, path, json={} if method == "POST" else None)
            assert resp.status_code == 401 and resp.json() == {"error": "Unauthorized"}, (method, path)
    with api.http("not-the-key") as h:
        assert h.get("/model_info").status_code == 401
    with api.http(api.admin_key) as h:  # the admin key does not open normal routes
        if api.admin_key:
            assert h.get("/model_info").status_code == 401
    with api.http(api.api_key) as h:
        assert h.get("/model_info").status_code == 200
        assert h.get("/get_load").status_code == 404
    with api.client(api_key=None) as c:
        assert c.ready() is True and sc.NUM_REQUESTS in c.metrics()
        with pytest.raises(ProviderError, match="unauthorized"):
            c.model_info()


def test_admin_routes_take_the_admin_key_and_refuse_the_api_key(api):
    if not (api.api_key and api.admin_key):
        pytest.skip("the live server runs without both keys")
    with api.http(api.api_key) as h:
        assert h.post("/flush_cache").status_code == 401
    with api.http(api.admin_key) as h:
        assert h.post("/flush_cache").status_code == 200


# -- client behaviour on the recorded transport ---------------------------------


def test_model_info_falls_back_to_old_route():
    seen: list[str] = []
    inner = recorded_handler(missing={"/model_info", "/server_info"})

    def handler(request):
        seen.append(request.url.path)
        return inner(request)

    with SGLangClient("http://old.test", api_key=API_KEY, transport=httpx.MockTransport(handler)) as c:
        assert c.model_info()["model_path"] == "Qwen/Qwen2.5-0.5B-Instruct"
        assert c.server_info()["api_key"] == "(sensitive)"
    assert seen == ["/model_info", "/get_model_info", "/server_info", "/get_server_info"]


def test_transient_errors_are_retried_then_raised():
    calls = []

    def refuse(request):
        calls.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    with SGLangClient("http://down.test", transport=httpx.MockTransport(refuse), retries=3) as c:
        with pytest.raises(TransientProviderError, match="ConnectError"):
            c.models()
        assert c.health() is False
    assert calls.count("/v1/models") == 3


def test_5xx_then_success_is_retried_by_a_client_asked_to_retry():
    responses = [httpx.Response(503), httpx.Response(200, json={"object": "list", "data": []})]
    with SGLangClient("http://flaky.test", transport=httpx.MockTransport(lambda r: responses.pop(0)),
                      retries=2) as c:
        assert c.models() == {"object": "list", "data": []}
    assert responses == []


def test_by_default_a_5xx_is_raised_once_for_the_engine_to_retry():
    responses = [httpx.Response(503), httpx.Response(200, json={"object": "list", "data": []})]
    with SGLangClient("http://flaky.test", transport=httpx.MockTransport(lambda r: responses.pop(0))) as c:
        with pytest.raises(TransientProviderError, match="HTTP 503"):
            c.models()
    assert len(responses) == 1


def test_4xx_is_not_retried():
    calls = []

    def bad(request):
        calls.append(1)
        return httpx.Response(400, json={"error": {"message": "bad sampling params"}})

    with SGLangClient("http://x.test", transport=httpx.MockTransport(bad)) as c:
        with pytest.raises(ProviderError, match="bad sampling params") as e:
            c.generate("x", 1)
    assert not isinstance(e.value, TransientProviderError)
    assert calls == [1]
    with SGLangClient("http://x.test", transport=httpx.MockTransport(lambda r: httpx.Response(404))) as c:
        with pytest.raises(ResourceNotFound):
            c.models()


def test_parse_metrics_rejects_garbage():
    with pytest.raises(ProviderError):
        parse_metrics("sglang:num_requests_total{model_name=\"x\" 1\n")


# -- sim only -------------------------------------------------------------------


def test_sim_says_it_is_a_simulator(sim_server):
    assert "not inference" in sim_server.banner
    with SGLangClient(sim_server.base_url, api_key=API_KEY) as c:
        info, model, models = c.server_info(), c.model_info(), c.models()
    assert info["engine"] == model["engine"] == "infraplan-sim"
    assert info["instance_id"] == model["instance_id"] == "inst-1"
    assert "infraplan-sim" in info["version"]
    assert models["data"][0]["owned_by"] == "infraplan-sim"
    assert info["enable_metrics"] is True and info["port"] == int(sim_server.base_url.rsplit(":", 1)[1])


def test_sim_text_is_deterministic_per_prompt(sim_server):
    with SGLangClient(sim_server.base_url, api_key=API_KEY) as c:
        a1 = c.generate("prompt A", max_new_tokens=8)["text"]
        a2 = c.generate("prompt A", max_new_tokens=8)["text"]
        b = c.generate("prompt B is different", max_new_tokens=8)["text"]
        short = c.generate("prompt A", max_new_tokens=3)
    assert a1 == a2 and a1 != b
    assert a1.startswith(short["text"]) and short["meta_info"]["completion_tokens"] == 3


def test_sim_streams_generate_and_chat(sim_server):
    with SGLangClient(sim_server.base_url, api_key=API_KEY) as c:
        events = list(c.generate_stream("stream me", max_new_tokens=5))
        full = c.generate("stream me", max_new_tokens=5)
        chunks = list(c.chat_stream([{"role": "user", "content": "hi"}], max_tokens=4))
        chat = c.chat([{"role": "user", "content": "hi"}], max_tokens=4)
    assert len(events) == 5
    assert [e["meta_info"]["completion_tokens"] for e in events] == [1, 2, 3, 4, 5]
    assert all(e["meta_info"]["finish_reason"] is None for e in events[:-1])
    assert events[-1]["meta_info"]["finish_reason"] == {"type": "length", "length": 5}
    assert events[-1]["text"] == full["text"]  # SGLang streams cumulative text by default
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
    assert text == chat["choices"][0]["message"]["content"]
    assert [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4


def test_sim_pacing_follows_ttft_and_tpot():
    sim = start_sim("--ttft-ms", "80", "--tpot-ms", "20")
    try:
        with SGLangClient(sim.base_url) as c:
            t0 = time.monotonic()
            stream = c.generate_stream("pace", max_new_tokens=6)
            next(stream)
            first = time.monotonic() - t0
            list(stream)
            total = time.monotonic() - t0
            metrics = c.metrics()
    finally:
        sim.stop()
    assert 0.08 <= first < 0.08 + 0.25
    assert 0.08 + 5 * 0.02 <= total < 0.18 + 0.4
    assert histogram_mean(metrics, sc.TIME_TO_FIRST_TOKEN) == pytest.approx(0.08, abs=0.03)
    assert histogram_mean(metrics, sc.INTER_TOKEN_LATENCY) == pytest.approx(0.02, abs=0.015)
    assert metric_total(metrics, sc.INTER_TOKEN_LATENCY + "_count") == 5


def _statuses(base_url: str, n: int) -> list[int]:
    with httpx.Client(base_url=base_url) as h:
        return [h.post("/generate", json={"text": "x", "sampling_params": {"max_new_tokens": 1}}).status_code
                for _ in range(n)]


def test_sim_error_rate_is_seeded():
    sims = [start_sim("--error-rate", "0.5", "--seed", "7", "--ttft-ms", "0", "--tpot-ms", "0") for _ in range(2)]
    try:
        runs = [_statuses(s.base_url, 40) for s in sims]
        with httpx.Client(base_url=sims[0].base_url) as h:
            assert h.get("/health").status_code == 200  # errors hit generation only
    finally:
        for s in sims:
            s.stop()
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}
    assert 8 <= runs[0].count(500) <= 32


def test_sim_error_rate_one_fails_every_generation():
    sim = start_sim("--error-rate", "1")
    try:
        with SGLangClient(sim.base_url, retries=2) as c:
            with pytest.raises(TransientProviderError, match="HTTP 500"):
                c.generate("x", 1)
            with pytest.raises(TransientProviderError):
                c.chat([{"role": "user", "content": "x"}])
            assert c.health() is True
    finally:
        sim.stop()


def test_sim_startup_delay():
    t0 = time.monotonic()
    sim = start_sim("--startup-s", "0.6", wait_ready=False)
    try:
        with SGLangClient(sim.base_url, retries=1) as c:
            assert c.health() is False
            assert c.model_info()["served_model_name"] == "tiny"  # info routes answer while warming up
            with pytest.raises(TransientProviderError, match="503"):
                c.generate("too early", 1)
            while not c.health():
                assert time.monotonic() - t0 < 5
                time.sleep(0.02)
        assert time.monotonic() - t0 >= 0.6
    finally:
        sim.stop()


def test_sim_exits_on_sigterm_within_a_second_even_mid_stream():
    sim = start_sim("--ttft-ms", "0", "--tpot-ms", "200")
    got_first = threading.Event()

    def stream():
        try:
            with SGLangClient(sim.base_url) as c:
                for _ in c.generate_stream("long", max_new_tokens=100):
                    got_first.set()
        except ProviderError:
            pass

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        assert got_first.wait(5)
        t0 = time.monotonic()
        sim.proc.send_signal(signal.SIGTERM)
        assert sim.proc.wait(timeout=2) == 0
        assert time.monotonic() - t0 < within(1.0)
    finally:
        sim.stop()
        t.join(timeout=2)


def test_sim_rejects_bad_server_args_json():
    proc = subprocess.run([sys.executable, "-m", "infraplan.serving.sim", "--port", "0", "--model-path", "m",
                           "--server-args-json", "[1]"], capture_output=True, text=True, timeout=10,
                          env={**os.environ})
    assert proc.returncode == 2 and "JSON object" in proc.stderr


def test_sim_rejects_bad_requests_with_400(sim_server):
    with SGLangClient(sim_server.base_url, api_key=API_KEY) as c:
        with pytest.raises(ProviderError, match="HTTP 400.*max tokens") as e:
            c.generate("x", max_new_tokens=-1)
        assert not isinstance(e.value, TransientProviderError)
        with pytest.raises(ProviderError, match="HTTP 400"):
            c.chat([{"role": "user", "content": "x"}], max_tokens="many")
        with pytest.raises(ResourceNotFound):
            c._request("GET", "/no_such_route")
        assert c.health() is True  # the server survived


def test_sim_reads_chunked_request_bodies_and_keeps_the_connection(sim_server):
    """smg streams request bodies chunked when its retries are off; a real server reads them."""
    import http.client

    host, port = sim_server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}).encode()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    try:
        for _ in range(2):  # the second request on the same connection finds no leftover bytes
            conn.request("POST", "/v1/chat/completions", body=iter([body[:10], body[10:]]), headers=headers,
                         encode_chunked=True)
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            assert resp.status == 200, answer
            assert answer["usage"]["completion_tokens"] == 3, "the body was read: max_tokens honoured"
        conn.request("POST", "/v1/chat/completions", body=iter([b"{"]), headers=headers, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 400 and "JSON decode error" in resp.read().decode()  # SGLang's validation 400
    finally:
        conn.close()


def test_sim_starts_fast():
    t0 = time.monotonic()
    sim = start_sim()
    try:
        assert time.monotonic() - t0 < within(1.5)  # typically ~0.1 s
    finally:
        sim.stop()

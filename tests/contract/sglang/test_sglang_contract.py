"""The SGLang HTTP contract, checked against the sim and against recorded SGLang bodies.

The same client calls run against (a) a live `infraplan.serving.sim`
process on 127.0.0.1 and (b) SGLang 0.5.x responses reconstructed from its
source (tests/fixtures/sglang, see the README there) served by httpx.MockTransport.
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
API_KEY = "sk-fixture-not-a-real-key"  # the key the recorded server was launched with


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
            while httpx.get(sim.base_url + "/health").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("sim never became healthy")
                time.sleep(0.02)
    except BaseException:
        sim.stop()
        raise
    return sim


@pytest.fixture(scope="module")
def sim_server():
    sim = start_sim("--ttft-ms", "2", "--tpot-ms", "1", "--instance-id", "inst-1",
                    "--server-args-json", json.dumps({"api_key": API_KEY, "tp_size": 1, "enable_metrics": True}))
    yield sim
    sim.stop()


# -- recorded SGLang responses --------------------------------------------------


def recorded_handler(*, missing: set[str] = frozenset()):
    """A MockTransport handler answering like the recorded SGLang 0.5.6 server."""
    routes = {
        ("GET", "/model_info"): "model_info.json",
        ("GET", "/get_model_info"): "model_info.json",
        ("GET", "/server_info"): "server_info.json",
        ("GET", "/get_server_info"): "server_info.json",
        ("GET", "/v1/models"): "v1_models.json",
        ("GET", "/get_load"): "get_load.json",
        ("POST", "/generate"): "generate.json",
        ("POST", "/v1/chat/completions"): "v1_chat_completions.json",
        ("POST", "/v1/completions"): "v1_completions.json",
    }

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in missing:
            return httpx.Response(404, json={"detail": "Not Found"})
        if path in ("/health", "/health_generate"):
            return httpx.Response(200)
        if path == "/metrics":
            return httpx.Response(200, text=(FIXTURES / "metrics.txt").read_text(),
                                  headers={"content-type": "text/plain; version=0.0.4; charset=utf-8"})
        # SGLang's add_api_key_middleware: everything but /health* and /metrics needs the key
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return httpx.Response(401, json={"error": "Unauthorized"})
        name = routes.get((request.method, path))
        if name is None:
            return httpx.Response(404, json={"detail": "Not Found"})
        return httpx.Response(200, json=json.loads((FIXTURES / name).read_text()))

    return handle


# -- the parametrized API under test --------------------------------------------


@dataclass
class Api:
    kind: str
    base_url: str
    transport: httpx.BaseTransport | None
    served_name: str
    model_path: str
    revision: str

    def client(self, api_key: str | None = API_KEY, **kw) -> SGLangClient:
        return SGLangClient(self.base_url, api_key=api_key, transport=self.transport, **kw)


@pytest.fixture(params=["sim", "recorded"])
def api(request) -> Api:
    if request.param == "sim":
        sim = request.getfixturevalue("sim_server")
        return Api("sim", sim.base_url, None, "tiny", "org/tiny-model", "abc123")
    return Api("recorded", "http://sglang.test:30000", httpx.MockTransport(recorded_handler()),
               "qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct", "7ae557604adf67be50417f59c2c2f167def9a775")


def test_health(api):
    with api.client() as c:
        assert c.health() is True
        assert c.health_generate() is True


def test_model_info(api):
    with api.client() as c:
        info = c.model_info()
    assert info["model_path"] == api.model_path
    assert info["is_generation"] is True
    assert isinstance(info["weight_version"], str)
    assert isinstance(info["tokenizer_path"], str)
    assert isinstance(info["architectures"], list)


def test_server_info_reports_identity_and_redacts_key(api):
    with api.client() as c:
        info = c.server_info()
    assert info["model_path"] == api.model_path
    assert info["served_model_name"] == api.served_name
    assert info["revision"] == api.revision
    assert isinstance(info["port"], int) and isinstance(info["tp_size"], int)
    assert info["api_key"] == "(sensitive)"
    assert all(s.get("api_key") in (None, "(sensitive)") for s in info["internal_states"])
    assert API_KEY not in json.dumps(info)
    assert isinstance(info["max_total_num_tokens"], int)


def test_models(api):
    with api.client() as c:
        models = c.models()
    assert models["object"] == "list"
    card = models["data"][0]
    assert card["id"] == api.served_name and card["object"] == "model"
    assert isinstance(card["max_model_len"], int)


def test_old_routes_answer_like_new_ones(api):
    with api.client() as c:
        new = c.model_info()
    with httpx.Client(base_url=api.base_url, transport=api.transport,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as h:
        old = h.get("/get_model_info").json()
        old_server = h.get("/get_server_info").json()
    assert old == new
    assert old_server["served_model_name"] == api.served_name


def test_generate(api):
    with api.client() as c:
        out = c.generate("The capital of France is", max_new_tokens=11)
    meta = out["meta_info"]
    assert isinstance(out["text"], str) and out["text"]
    assert all(isinstance(t, int) for t in out["output_ids"])
    assert meta["completion_tokens"] == len(out["output_ids"]) == 11
    assert meta["finish_reason"]["type"] in ("length", "stop")
    assert isinstance(meta["prompt_tokens"], int) and isinstance(meta["id"], str)
    assert meta["e2e_latency"] > 0


def test_chat_and_completion(api):
    with api.client() as c:
        chat = c.chat([{"role": "user", "content": "Hello"}], max_tokens=10, model=api.served_name)
        comp = c.completion("The capital of France is", max_tokens=16, model=api.served_name)
    msg = chat["choices"][0]["message"]
    assert chat["object"] == "chat.completion" and chat["model"] == api.served_name
    assert msg["role"] == "assistant" and isinstance(msg["content"], str)
    assert chat["choices"][0]["finish_reason"] in ("stop", "length")
    for body, n in ((chat, 10), (comp, 16)):
        u = body["usage"]
        assert u["completion_tokens"] == n
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert comp["object"] == "text_completion" and isinstance(comp["choices"][0]["text"], str)


def test_load(api):
    with api.client() as c:
        load = c.load()
    assert isinstance(load, list) and load
    assert {"dp_rank", "num_reqs", "num_waiting_reqs", "num_tokens"} <= set(load[0])


def test_metrics_parse_with_sglang_names(api):
    with api.client() as c:
        c.generate("warm the histograms", max_new_tokens=3)
        metrics = c.metrics()
    for hist in (sc.TIME_TO_FIRST_TOKEN, sc.INTER_TOKEN_LATENCY, sc.E2E_REQUEST_LATENCY):
        assert metric_total(metrics, hist + "_count", model_name=api.served_name) >= 1
        assert histogram_mean(metrics, hist, model_name=api.served_name) > 0
        assert any(s.labels.get("le") == "+Inf" for s in metrics[hist + "_bucket"])
    for name in (sc.NUM_REQUESTS, sc.PROMPT_TOKENS, sc.GENERATION_TOKENS):
        assert metric_total(metrics, name, model_name=api.served_name) >= 1
    for gauge in (sc.NUM_RUNNING_REQS, sc.NUM_QUEUE_REQS, sc.GEN_THROUGHPUT, sc.TOKEN_USAGE):
        (sample,) = metrics[gauge]
        assert sample.labels[sc.MODEL_NAME_LABEL] == api.served_name
        assert sample.labels["engine_type"] == "unified"
    assert not any(name.endswith("_created") for name in metrics)  # SGLang's multiprocess export has none


def test_key_is_required_except_for_health_and_metrics(api):
    with api.client(api_key=None) as c:
        assert c.health() is True
        assert sc.NUM_REQUESTS in c.metrics()
        with pytest.raises(ProviderError, match="unauthorized"):
            c.model_info()


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
    text = "".join(ch["choices"][0]["delta"]["content"] or "" for ch in chunks if ch["choices"])
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
        assert resp.status == 400 and "JSON object" in resp.read().decode()
    finally:
        conn.close()


def test_sim_starts_fast():
    t0 = time.monotonic()
    sim = start_sim()
    try:
        assert time.monotonic() - t0 < within(1.5)  # typically ~0.1 s
    finally:
        sim.stop()

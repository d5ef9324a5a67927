"""The local `sglang` engine becomes ready against a server that costs what real SGLang costs.

Real SGLang's `/health` runs a one-token generation and sleeps 1 s before it answers; the
engine used to poll it with a 1.0 s timeout and so never saw a server come up. A stand-in
`sglang.launch_server` (on PYTHONPATH, run by the real provider) answers `/health` after
1.2 s, with and without 0.5.23's `/ready`.
"""

from __future__ import annotations

import textwrap

import psutil
import pytest

from infraplan.providers.contract import ProviderContext
from infraplan_providers.local.provider import LocalProvider
from helpers.timing import within
from infraplan.models.kinds import ResourceKind

pytestmark = pytest.mark.e2e

LAUNCH_SERVER = textwrap.dedent(
    """\
    import os, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    port = int(sys.argv[sys.argv.index("--port") + 1])
    has_ready = os.environ.get("STANDIN_HAS_READY") == "1"
    seen = open(os.environ["STANDIN_LOG"], "a")
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.write(self.path + "\\n"); seen.flush()
            if self.path == "/health":
                time.sleep(1.2)  # a one-token generation and SGLang's own 1 s sleep
                code = 200
            elif self.path == "/ready":
                code = 200 if has_ready else 404
            elif self.path in ("/model_info", "/server_info"):
                data = (b'{"model_path": "org/tiny", "is_generation": true}' if self.path == "/model_info"
                        else b'{"model_path": "org/tiny", "revision": "abc1234"}')
                self.send_response(200); self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
                return
            else:
                code = 404
            self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
        def log_message(self, *a):
            pass
    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


@pytest.fixture
def standin(tmp_path, monkeypatch):
    pkg = tmp_path / "standin" / "sglang"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "launch_server.py").write_text(LAUNCH_SERVER)
    monkeypatch.syspath_prepend(str(tmp_path / "standin"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "standin"))
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "routes.log"))
    return tmp_path / "routes.log"


@pytest.mark.parametrize("has_ready", [False, True], ids=["sglang-0.5.6-health-only", "sglang-0.5.23-ready"])
def test_sglang_engine_becomes_ready(tmp_path, standin, monkeypatch, has_ready):
    monkeypatch.setenv("STANDIN_HAS_READY", "1" if has_ready else "0")
    provider = LocalProvider(ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db",
                                             runtime_dir=tmp_path / "run",
                                             settings={"ready_timeout_s": 15, "stop_timeout_s": 3}, name="local"))
    attrs = {"fleet": "fleet.chat", "index": 0, "engine": "sglang", "model_source": "hf://org/tiny",
             "model_revision": "abc1234", "served_name": "tiny", "args": {}}
    created = provider.create(ResourceKind.REPLICA, "fleet.chat[0]", attrs)
    try:
        assert created["endpoint"].startswith("http://127.0.0.1:")
        routes = [r for r in standin.read_text().split() if r not in ("/model_info", "/server_info")]
        if has_ready:
            assert routes[-1] == "/ready" and "/health" not in routes  # no generation just to start
        else:
            assert routes[:2] == ["/ready", "/health"]
    finally:
        provider.delete(ResourceKind.REPLICA, "fleet.chat[0]", created)  # the provider's own stop: SIGTERM, then SIGKILL
    assert not psutil.pid_exists(created["pid"]) or psutil.Process(created["pid"]).status() == psutil.STATUS_ZOMBIE


def test_the_simulator_has_ready_and_a_health_that_can_cost_what_sglangs_costs():
    import threading
    import time

    import httpx

    from infraplan.serving.sim import SimConfig, make_server

    server = make_server(SimConfig(model_path="org/tiny", served_model_name="tiny", port=0, health_delay_s=0.5,
                                   server_args={"api_key": "k-123"}))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with httpx.Client(trust_env=False, timeout=5) as h:
            t0 = time.monotonic()
            assert h.get(f"{url}/ready").status_code == 200  # no key needed, as in SGLang 0.5.23
            assert time.monotonic() - t0 < within(0.4)
            t0 = time.monotonic()
            assert h.get(f"{url}/health").status_code == 200
            assert time.monotonic() - t0 >= 0.5
            assert h.get(f"{url}/v1/models").status_code == 401
    finally:
        server.shutdown()
        server.server_close()

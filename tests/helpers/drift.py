"""Helpers and fixtures for the drift tests: a small applied fleet of sim servers, misbehaving
stand-ins, and a webhook receiver on 127.0.0.1. Every process a test starts is stopped afterwards."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from infraplan.plan.planner import PlanOptions
from infraplan.workspace import Workspace
from infraplan_providers.local import process
from infraplan.models.kinds import ResourceKind

from helpers.cli import run
from helpers.net import free_port

HERE = Path(__file__).resolve().parent

CONFIG = """\
model:
  m:
    source: hf://org/tiny-model
    revision: "aaaa111"
    served_name: tiny
fleet:
  web:
    provider: local
    model: model.m
    replicas: {replicas}
    engine:
      type: sim
      args:
        context_length: 2048
      sim:
        startup_s: 0
        ttft_ms: 1
        tpot_ms: 1
"""


class Fleet:
    """An applied config in a temp dir, with helpers that change the real world behind its back."""

    def __init__(self, path: Path, replicas: int):
        self.path = path
        self.state = path / "infraplan.db"
        self.extra: list[int] = []  # pids the test started itself
        path.mkdir(parents=True, exist_ok=True)
        self.write(replicas)

    def write(self, replicas: int) -> None:
        (self.path / "main.yaml").write_text(CONFIG.format(replicas=replicas))

    def ws(self) -> Workspace:
        return Workspace(self.path)

    def apply(self):
        ws = self.ws()
        return ws.apply(ws.plan())

    def replicas(self) -> dict[str, dict]:
        return {r.address: r.attributes for r in self.ws().snapshot().resources if r.kind == "replica"}

    def drift(self, *args: str):
        return run("drift", str(self.path), "--timeout", "1", *args)

    def provider(self):
        return self.ws().providers(self.ws().config).get("local")

    def kill(self, address: str) -> None:
        assert process.stop_pid(self.replicas()[address]["pid"], 2.0)

    def restart_with(self, address: str, **changes) -> int:
        """Stop a replica's server and start another one in its place (same instance id and port)."""
        attrs = dict(self.replicas()[address])
        self.kill(address)
        new = self.provider().create(ResourceKind.REPLICA, address, {**attrs, **changes})
        self.extra.append(new["pid"])
        return new["pid"]

    def start_untracked(self) -> dict:
        """A server started for this state that no state record knows (an apply that lost its record)."""
        provider = self.provider()
        attrs = dict(next(iter(self.replicas().values())))
        attrs = {k: v for k, v in attrs.items() if k not in provider.computed and k != "port"}
        attrs = provider.prepare_create(ResourceKind.REPLICA, "fleet.web[99]", attrs)
        made = provider.create(ResourceKind.REPLICA, "fleet.web[99]", attrs)
        self.extra.append(made["pid"])
        return made

    def start_fake(self, mode: str, address: str) -> dict:
        """Put a misbehaving stand-in server into state at `address` (replacing its record)."""
        from infraplan.state import StateStore

        port = free_port()
        iid = f"fake{mode}{port}"
        proc = subprocess.Popen([sys.executable, str(HERE / "fake_server.py"), "--port", str(port),
                                 "--instance-id", iid, "--mode", mode],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.extra.append(proc.pid)
        deadline = time.monotonic() + 10
        while not _listening(port):
            assert time.monotonic() < deadline, "fake server did not start"
            time.sleep(0.05)
        import psutil

        attrs = dict(self.replicas()[address], pid=proc.pid, started_at=psutil.Process(proc.pid).create_time(),
                     instance_id=iid, port=port, endpoint=f"http://127.0.0.1:{port}")
        with StateStore(self.state) as store:
            store.put(address, kind="replica", attributes=attrs, provider="local")
        return attrs

    def destroy(self) -> None:
        for pid in self.extra:
            process.stop_pid(pid, 1.0)
        if self.state.exists():
            ws = self.ws()
            ws.apply(ws.plan(PlanOptions(destroy=True)))
        for inst in self.provider().list_instances():  # anything left for this state
            process.stop_pid(inst.detail["pid"], 1.0)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def make_fleet(tmp_path):
    made: list[Fleet] = []

    def make(replicas: int = 3) -> Fleet:
        f = Fleet(tmp_path / f"fleet{len(made)}", replicas)
        made.append(f)
        f.apply()
        return f

    yield make
    for f in made:
        f.destroy()


class Webhook:
    """Collects the JSON bodies POSTed to it (an Apprise json:// target)."""

    def __init__(self):
        self.messages: list[dict] = []
        hook = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.messages.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def traffic(endpoint: str, n: int = 3) -> None:
    with httpx.Client(trust_env=False, timeout=5) as c:
        for _ in range(n):
            assert c.post(f"{endpoint}/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 2}}).status_code == 200

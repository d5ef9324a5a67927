"""The simulator answers malformed requests as SGLang 0.5.23 does (http_server.py's
RequestValidationError and HTTPException handlers, uvicorn's framing error), never by
dropping the connection, and closes idle connections so they do not hold the server forever."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import psutil
import pytest

from helpers.timing import within
from infraplan.serving.sim import SimConfig, make_server
from infraplan.serving.sim_requests import MAX_BODY_BYTES

IDLE_S = 0.5


@pytest.fixture
def sim():
    server = make_server(SimConfig(model_path="org/tiny", served_model_name="tiny", port=0, ttft_ms=1, tpot_ms=1,
                                   idle_timeout_s=IDLE_S))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _connect(sim) -> socket.socket:
    s = socket.create_connection(sim.server_address[:2], timeout=10)
    return s


def _response(s: socket.socket) -> tuple[int, dict, bytes]:
    """One HTTP response read off `s`: (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"the connection was dropped without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "the body was cut short"
        body += chunk
    return status, headers, body


def _post(path: str, body: bytes, *, length: str | None = None) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n").encode() + body


CHAT_OK = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()


def _bad_request(message_part: str, kind: str = "Bad Request") -> dict:
    return {"object": "error", "type": kind, "param": None, "code": 400, "message": message_part}


@pytest.mark.parametrize(("path", "body", "kind", "message_part"), [
    # RequestValidationError -> 400 "Bad Request" (SGLang overrides FastAPI's 422)
    ("/v1/chat/completions", b'{"messages": "hi"}', "Bad Request", "'loc': ('body', 'messages')"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user"}], "max_tokens": "many"}', "Bad Request",
     "'loc': ('body', 'max_tokens')"),
    ("/v1/completions", b'{"prompt": {"a": 1}}', "Bad Request", "'loc': ('body', 'prompt'"),
    ("/generate", b'{"text": "hi", "sampling_params": "x"}', "Bad Request", "'loc': ('body', 'sampling_params'"),
    ("/v1/chat/completions", b'{"messages": [', "Bad Request", "JSON decode error"),
    ("/v1/chat/completions", b"[1, 2]", "Bad Request", "validation error"),
    # FastAPI's HTTPException(400, "There was an error parsing the body") through SGLang's handler
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', "400",
     "There was an error parsing the body"),
    ("/v1/chat/completions", b"[" * 100_000 + b"]" * 100_000, "400", "There was an error parsing the body"),
])
def test_a_malformed_body_is_answered_and_the_connection_kept(sim, path, body, kind, message_part):
    with _connect(sim) as s:
        s.sendall(_post(path, body))
        status, headers, raw = _response(s)
        assert status == 400 and headers["content-type"] == "application/json"
        doc = json.loads(raw)
        assert {k: doc[k] for k in ("object", "type", "param", "code")} == {
            "object": "error", "type": kind, "param": None, "code": 400}
        assert message_part in doc["message"]
        assert len(doc["message"]) < 2000  # a huge input is not echoed back whole
        s.sendall(_post("/v1/chat/completions", CHAT_OK))  # the same connection still serves
        status, _, raw = _response(s)
        assert status == 200 and json.loads(raw)["object"] == "chat.completion"


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_a_content_length_that_is_no_number_is_uvicorns_400_and_a_close(sim, length):
    with _connect(sim) as s:
        s.sendall(_post("/generate", b"{}", length=length))
        status, headers, raw = _response(s)
        assert (status, raw) == (400, b"Invalid HTTP request received.")
        assert headers["content-type"].startswith("text/plain")
        assert s.recv(1) == b""  # closed: the framing is lost


def test_a_body_over_the_limit_is_413_unread(sim):
    with _connect(sim) as s:
        s.sendall(_post("/v1/chat/completions", b"{", length=str(MAX_BODY_BYTES + 1)))
        status, _, raw = _response(s)
        doc = json.loads(raw)
        assert status == 413 and doc["code"] == 413 and doc["type"] == "413" and doc["object"] == "error"
        assert s.recv(1) == b""


def test_a_body_shorter_than_its_content_length_is_400_after_the_idle_timeout(sim):
    with _connect(sim) as s:
        t0 = time.monotonic()
        s.sendall(_post("/generate", b"{}", length="100"))
        status, _, raw = _response(s)
        assert status == 400 and "Content-Length of 100 bytes" in json.loads(raw)["message"]
        assert IDLE_S * 0.9 <= time.monotonic() - t0 <= within(IDLE_S + 2)
        assert s.recv(1) == b""


def _server_side(sim) -> int:
    """Established connections whose local end is the simulator's port (both ends live in this process)."""
    port = sim.server_address[1]
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def test_idle_connections_are_closed_after_the_idle_timeout(sim):
    t0 = time.monotonic()
    conns = [_connect(sim) for _ in range(20)]
    try:
        deadline = time.monotonic() + 5
        while _server_side(sim) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _server_side(sim) == 20  # accepted, each held open while idle
        for c in conns:  # the server closes each after IDLE_S of silence
            c.settimeout(within(IDLE_S + 2))
            assert c.recv(1) == b""
        assert time.monotonic() - t0 >= IDLE_S * 0.9
        deadline = time.monotonic() + within(2)
        while _server_side(sim) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _server_side(sim) == 0
    finally:
        for c in conns:
            c.close()


def test_httpx_gets_the_json_error(sim):
    host, port = sim.server_address[:2]
    with httpx.Client(base_url=f"http://{host}:{port}", trust_env=False, timeout=10) as client:
        bad = client.post("/v1/chat/completions", json={"messages": "hi"})
        assert bad.status_code == 400 and bad.json()["type"] == "Bad Request"
        good = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert good.status_code == 200

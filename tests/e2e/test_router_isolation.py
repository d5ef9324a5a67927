"""Fault isolation at the router, proved under load through the real smg (issue #16 item 3):
the flags come from a router's config blocks (`infraplan.serving.smg.launch_args`).

- a worker that fails every request: with the circuit breaker on it is ejected within its
  threshold and client-visible failures stop; with it off (same run) they go on;
- a hung worker (SIGSTOP): the request timeout bounds what a client waits, and the health
  check takes the worker out.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from helpers.net import free_port
from helpers.sims import start_sim, start_smg
from infraplan.serving.smg import launch_args

pytest.importorskip("smg")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # about 12 s each: real smg under load

BODY = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _smg(urls: list[str], attrs: dict):
    """smg with the launch flags a router's config blocks give (`launch_args`)."""
    return start_smg(urls, "round_robin", launch_args(attrs))


def _send(endpoint: str, n: int, timeout: float = 10) -> list[tuple[int, float]]:
    """`n` requests one after another: (status or 0 for a transport error, seconds)."""
    out = []
    with httpx.Client(timeout=timeout, trust_env=False) as c:
        for _ in range(n):
            t0 = time.monotonic()
            try:
                code = c.post(f"{endpoint}/v1/chat/completions", json=BODY).status_code
            except httpx.HTTPError:
                code = 0
            out.append((code, time.monotonic() - t0))
    return out


def test_the_circuit_breaker_ejects_a_failing_worker_and_client_failures_stop():
    good = [start_sim() for _ in range(2)]
    bad = start_sim(error_rate=1.0)
    urls = [u for _, u in good] + [bad[1]]
    seen = {}
    try:
        for name, attrs in (("breaker on", {"retries": {"enabled": False},
                                            "circuit_breaker": {"failure_threshold": 3, "open_duration": "5m"}}),
                            ("breaker off", {"retries": {"enabled": False}, "circuit_breaker": {"enabled": False}})):
            proc, endpoint = _smg(urls, attrs)
            try:
                seen[name] = [code for code, _ in _send(endpoint, 120)]
            finally:
                proc.terminate()
                proc.wait(20)
    finally:
        for s, _ in [*good, bad]:
            s.shutdown()
    on, off = seen["breaker on"], seen["breaker off"]
    counts = {k: collections.Counter(v) for k, v in seen.items()}
    print(f"\nfailing worker behind round_robin, retries off, 120 requests each: {counts}")
    assert sum(c != 200 for c in on) <= 3 + 1, counts  # ejected within its threshold
    assert all(c == 200 for c in on[30:]), "no client-visible failure once the breaker opened"
    assert sum(c != 200 for c in off[30:]) >= 20, "without the breaker every third request keeps failing"


def test_a_hung_worker_costs_at_most_the_request_timeout_and_the_health_check_removes_it(tmp_path):
    port = free_port()
    hung = subprocess.Popen([sys.executable, "-m", "infraplan.serving.sim", "--port", str(port), "--model-path",
                             "org/tiny", "--served-model-name", "tiny", "--ttft-ms", "2", "--tpot-ms", "1",
                             "--health-delay-s", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    good = start_sim()
    hung_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{hung_url}/ready", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "sim did not start"
            time.sleep(0.1)
        attrs = {"retries": {"enabled": False}, "timeouts": {"request": "2s"},
                 "health_check": {"interval": "1s", "timeout": "1s", "failure_threshold": 1, "endpoint": "/ready"}}
        proc, endpoint = _smg([good[1], hung_url], attrs)
        try:
            assert all(code == 200 for code, _ in _send(endpoint, 6))
            os.kill(hung.pid, signal.SIGSTOP)
            t0 = time.monotonic()
            first = _send(endpoint, 10, timeout=30)
            worst = max(s for _, s in first)
            time.sleep(3)  # a few health-check rounds
            later = _send(endpoint, 20, timeout=30)
            print(f"\nhung worker: first 10 requests {collections.Counter(c for c, _ in first)}, slowest {worst:.1f}s; "
                  f"then {collections.Counter(c for c, _ in later)} in {time.monotonic() - t0:.1f}s")
            assert worst <= 2 + 3, "the request timeout bounds what a client waits on the hung worker"
            assert all(code == 200 for code, _ in later), "the health check took the hung worker out"
        finally:
            proc.terminate()
            proc.wait(20)
    finally:
        hung.kill()  # stopped processes take SIGKILL at once
        hung.wait(10)
        good[0].shutdown()

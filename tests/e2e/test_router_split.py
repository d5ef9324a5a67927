"""The split a canary really gets: real smg in front of four simulator workers, under load.

A canary's shares in the plan are worker counts (1 canary of 4 workers held: 25%). That is
what smg's round_robin gives; its default, cache_aware, sends a repeated prompt to one
worker, which is why the plan warns about a canary behind it (plan.planner._warn_uneven_split).
"""

from __future__ import annotations

import collections
import threading

import httpx
import pytest

from infraplan.plan.weights import EVEN_POLICIES, plan_steps
from helpers.sims import start_sim, start_smg

pytest.importorskip("smg")
pytestmark = pytest.mark.e2e

REQUESTS = 240


def _load(endpoint: str, n: int, threads: int = 4) -> collections.Counter:
    """`n` chat requests from `threads` threads, counted by the worker smg routed each to."""
    seen: collections.Counter = collections.Counter()
    lock = threading.Lock()
    body = {"model": "tiny", "messages": [{"role": "user", "content": "the same prompt every time"}],
            "max_tokens": 2}

    def run(k: int) -> None:
        with httpx.Client(timeout=10, trust_env=False) as c:
            for _ in range(k):
                r = c.post(f"{endpoint}/v1/chat/completions", json=body)
                with lock:
                    seen[r.headers.get("x-smg-routed-worker-id") if r.status_code == 200 else f"HTTP {r.status_code}"] += 1

    ts = [threading.Thread(target=run, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return seen


@pytest.fixture
def workers():
    started = [start_sim() for _ in range(4)]
    yield [url for _, url in started]
    for server, _ in started:
        server.shutdown()


def _smg(policy: str, urls: list[str]):
    return start_smg(urls, policy, healthy=True)


@pytest.mark.slow  # over 10 s of real processes: the test command's second step
def test_round_robin_gives_each_worker_its_count_share_and_cache_aware_does_not(workers):
    (step,) = plan_steps([25], 1, 3)  # one canary beside three old replicas: the plan says 25%
    assert (step.new, step.old, step.share) == (1, 3, 25.0) and "round_robin" in EVEN_POLICIES

    proc, endpoint = _smg("round_robin", workers)
    try:
        seen = _load(endpoint, REQUESTS)
    finally:
        proc.terminate()
        proc.wait(20)
    assert sum(seen.values()) == REQUESTS and set(seen) <= set(workers), seen
    canary = workers[0]
    share = 100.0 * seen[canary] / REQUESTS
    print(f"\nround_robin: {dict(seen)}; canary share {share:.1f}% (plan: {step.share:.0f}%)")
    assert abs(share - step.share) <= 4, seen  # four client threads may swap neighbours at the edges
    assert all(abs(100.0 * n / REQUESTS - 25) <= 4 for n in seen.values()), seen

    proc, endpoint = _smg("cache_aware", workers)
    try:
        seen = _load(endpoint, REQUESTS)
    finally:
        proc.terminate()
        proc.wait(20)
    top = max(seen.values()) / REQUESTS
    print(f"cache_aware: {dict(seen)}; the busiest worker got {top:.0%}")
    assert top >= 0.5, f"cache_aware would have split a repeated prompt evenly after all: {seen}"

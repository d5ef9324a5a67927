"""Issue 5's proof: safe releases through `infraplan apply`, under real HTTP load through the router.

Each test runs the real CLI in a subprocess against sim replicas (infraplan's SGLang API
simulator, not inference) behind the real SGLang Model Gateway (smg), while a bounded
background load sends chat requests to the router's endpoint. Request and failure counts
are recorded with `record_property` and printed (`pytest -s` / `-rA` shows them).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

import httpx
import pytest

from infraplan.state import StateStore

pytest.importorskip("smg")
pytestmark = pytest.mark.e2e

MAX_REQUESTS = 8000   # the load stops at whichever cap comes first
MAX_SECONDS = 90.0
PACE_S = 0.02         # each load thread waits this long between requests: a steady, bounded rate

BASE = """
variable:
  rev: {{type: string, default: aaa1111}}
  error_rate: {{type: number, default: 0}}
model:
  m: {{source: hf://org/tiny, revision: "${{var.rev}}", served_name: tiny}}
fleet:
  chat:
    model: model.m
    replicas: {replicas}
    engine: {{type: sim, sim: {{ttft_ms: 2, tpot_ms: 1, error_rate: "${{var.error_rate}}"}}}}
    rollout:
{rollout}
{router}"""
ROUTER = "router:\n  front: {{fleets: [fleet.chat], policy: round_robin{extra}}}\n"


def config(replicas: int, rollout: str, router: bool = True, router_extra: str = "") -> str:
    body = "\n".join("      " + line for line in rollout.strip().splitlines())
    front = ROUTER.format(extra=f", {router_extra}" if router_extra else "")
    return BASE.format(replicas=replicas, rollout=body, router=front if router else "")


class Load:
    """Chat requests to `url` from `threads` threads until stopped or capped; each one recorded."""

    def __init__(self, url: str, threads: int = 2):
        self.url, self.threads = url, threads
        self.records: list[tuple[float, float, bool, str]] = []  # (sent at, done at, ok, worker or error)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        with httpx.Client(timeout=10, trust_env=False) as c:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if len(self.records) >= MAX_REQUESTS:
                        return
                t0 = time.time()
                try:
                    r = c.post(f"{self.url}/v1/chat/completions", json=body)
                    ok, who = r.status_code == 200, r.headers.get("x-smg-routed-worker-id") or f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    ok, who = False, repr(e)
                with self._lock:
                    self.records.append((t0, time.time(), ok, who))
                self._stop.wait(PACE_S)

    def __enter__(self) -> Load:
        for t in self._workers:
            t.start()
        time.sleep(0.3)  # the load is flowing before the change starts
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(15)

    @property
    def sent(self) -> int:
        return len(self.records)

    @property
    def failures(self) -> list[tuple[float, float, bool, str]]:
        return [r for r in self.records if not r[2]]

    def summary(self) -> str:
        return f"{self.sent} requests through the router, {len(self.failures)} failed: {self.failures[:5]}"


def snapshot(project):
    return StateStore.open_readonly(project.state).snapshot()


def replicas(project, deposed: bool = False) -> list:
    return sorted((r for r in snapshot(project).resources if r.kind == "replica" and bool(r.deposed) == deposed),
                  key=lambda r: r.address)


def revisions(project) -> list[str]:
    return [r.attributes["model_revision"] for r in replicas(project)]


def endpoint(project, address: str = "router.front") -> str:
    return next(r for r in snapshot(project).resources if r.address == address).attributes["endpoint"]


def audit(project) -> list:
    """Audit entries, oldest first."""
    return list(reversed(StateStore.open_readonly(project.state).audit_log()))


def record(record_property, name: str, load: Load) -> None:
    record_property(f"{name}_requests", load.sent)
    record_property(f"{name}_failures", len(load.failures))
    print(f"\n[{name}] {load.summary()}")


@pytest.mark.slow  # over 10 s of real processes: the test command's second step
def test_rolling_update_of_4_replicas_fails_no_request(project, record_property):
    project.write("main.yaml", config(4, "strategy: rolling\nmax_surge: 2"))
    project.run("apply", "--auto-approve")
    old = {r.attributes["endpoint"] for r in replicas(project)}
    with Load(endpoint(project)) as load:
        project.run("apply", "--auto-approve", "--var", "rev=bbb2222")
        done = time.time()
        time.sleep(0.5)
    record(record_property, "rolling", load)
    assert load.sent >= 50 and not load.failures, load.summary()
    assert revisions(project) == ["bbb2222"] * 4 and not replicas(project, deposed=True)
    new = {r.attributes["endpoint"] for r in replicas(project)}
    served = {who for _, _, ok, who in load.records if ok}
    assert served & old and served & new, "the load saw both versions through the router"
    after = {who for t0, _, _, who in load.records if t0 > done}
    assert after and after <= new, "after the rollout only the new version serves"
    steps = [a.details.get("step") for a in audit(project) if a.event == "rollout-step"]
    assert steps.count("batch") == 2 and steps[-1] == "done"


@pytest.mark.slow
def test_blue_green_switch_fails_no_request_and_keeps_the_old_set_for_the_window(project, record_property):
    project.write("main.yaml", config(4, "strategy: blue_green"))
    project.run("apply", "--auto-approve")
    old = {r.attributes["endpoint"] for r in replicas(project)}
    with Load(endpoint(project)) as load:
        project.run("apply", "--auto-approve", "--var", "rev=bbb2222")
    record(record_property, "blue_green", load)
    assert load.sent >= 50 and not load.failures, load.summary()
    assert revisions(project) == ["bbb2222"] * 4
    assert not replicas(project, deposed=True), "no rollback_window: the old set is removed at the end"
    assert not {r.attributes["endpoint"] for r in replicas(project)} & old

    # with a rollback window, the old set stays (deposed, still running) after the switch
    project.write("main.yaml", config(4, "strategy: blue_green\nrollback_window: 3s"))
    plan = project.run("plan", "--var", "rev=ccc3333")
    assert "old set kept 3s" in plan.stdout, plan.stdout
    # (the plan prices the fleet at its replica count: the old set kept through the window is
    # not in the plan's cost; local replicas cost $0 either way)
    kept: list[list] = []
    alive: list[bool] = []
    output: list[str] = []
    proc = project.popen("apply", "--auto-approve", "--var", "rev=ccc3333")
    reader = threading.Thread(target=lambda: output.append(proc.communicate()[0]), daemon=True)
    reader.start()
    try:
        with httpx.Client(timeout=2, trust_env=False) as c:
            while reader.is_alive():
                dep = replicas(project, deposed=True)
                if len(dep) == 4 and all(r.attributes["model_revision"] == "bbb2222" for r in dep):
                    live = [r for r in replicas(project) if r.attributes["model_revision"] == "ccc3333"]
                    if len(live) == 4 and not kept:
                        kept.append([r.attributes["endpoint"] for r in dep])
                        alive += [c.get(f"{u}/health").status_code == 200 for u in kept[-1]]
                time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(30)
    out = "".join(output)
    assert proc.returncode == 0, out
    assert kept, "the old set was kept deposed in state after the switch"
    assert alive == [True] * 4, "and kept running through the window"
    assert revisions(project) == ["ccc3333"] * 4 and not replicas(project, deposed=True)
    with httpx.Client(timeout=2, trust_env=False) as c:
        for url in kept[-1]:
            with pytest.raises(httpx.HTTPError):
                c.get(f"{url}/health")  # removed once the window passed


FAILING_CANARY = """
strategy: canary
steps: [25, 100]
analysis:
  window_s: 2
  min_requests: 5
  gates:
    - {metric: error_rate, max: 0.01}
"""


def roll_out_failing_canary(project, record_property, name: str) -> dict:
    """Under load, roll out a version failing half its requests to 3 replicas behind the router:
    check it is rolled back at its first step with the evidence in output and audit log, and
    return what the clients saw while the canary was routed."""
    old = {r.attributes["endpoint"] for r in replicas(project)}
    with Load(endpoint(project)) as load:
        bad = project.run("apply", "--auto-approve", "--var", "rev=bbb2222", "--var", "error_rate=0.5", check=False)
    out = bad.stdout + bad.stderr
    record(record_property, name, load)
    assert bad.returncode == 1, out
    assert "rolled back" in out and "error_rate" in out and "breaks <= 0.01" in out and "Traceback" not in out
    assert {r.attributes["endpoint"] for r in replicas(project)} == old and revisions(project) == ["aaa1111"] * 3
    assert not replicas(project, deposed=True)

    log = audit(project)
    weights = [a.details for a in log if a.event == "rollout-step" and a.details.get("step") == "weight"]
    assert [w["target"] for w in weights] == [25], "stopped at its first step"
    share = weights[0]["share"] / 100.0  # the weight really reached: 1 new replica of 4 held
    assert share == pytest.approx(0.25)
    (rb,) = [a.details for a in log if a.event == "rollback"]
    assert "error_rate" in rb["reason"]
    canary = rb["evidence"]["canary"]
    assert canary["error_rate"] > 0.01
    assert canary["aborted"] > 0, "the canary's own metrics count the failed requests"
    gate = next(g for g in rb["evidence"]["gates"] if g["metric"] == "error_rate")
    assert gate["passed"] is False

    routed_from = weights[0]["at"] - 2.0  # the canary joined smg just before the step was recorded
    routed_to = datetime.fromisoformat(next(a for a in log if a.event == "rollback").at).timestamp()
    canary_url = next(a.details["evidence"]["endpoint"] for a in log
                      if a.event == "rollout-gate" and a.details["gate"].startswith("readiness"))
    assert canary_url not in old
    on_canary = sorted(r for r in load.records if r[3] == canary_url)  # smg names the worker, on a 500 too
    assert on_canary, "the router sent part of the load to the canary"
    assert all(routed_from <= r[0] <= routed_to for r in on_canary + load.failures), \
        "the canary served, and clients saw failures, only while the rollout had it routed"
    # The canary's share of what clients sent while smg really routed to it: from the first to the
    # last request smg sent it (the rollout's records above only bound that span: the rollback
    # entry is written after the new replica is deleted, seconds later). Slack: round_robin hands
    # the canary every 4th request, so over a span of n requests that starts and ends on it, it gets
    # (n - 1) / 4 + 1 = share * n + 0.75; two client threads may swap neighbours at either edge (one
    # more each). smg can only send it fewer (its circuit breaker opens after repeated failures).
    span = [r for r in load.records if on_canary[0][0] <= r[0] <= on_canary[-1][0]]
    allowed = share * len(span) + 3
    record_property(f"{name}_requests_while_routed", len(span))
    record_property(f"{name}_sent_to_canary", len(on_canary))
    record_property(f"{name}_failures_allowed", round(allowed, 1))
    print(f"[{name}] {len(span)} requests while smg routed to the canary, {len(on_canary)} of them to it "
          f"({sum(1 for r in on_canary if r[2])} answered), share reached {share:.0%}, "
          f"{len(load.failures)} failed, at most {allowed:.1f} allowed")
    assert len(on_canary) <= allowed, "the router gave the canary no more than its share"
    return {"load": load, "canary_url": canary_url, "allowed": allowed, "on_canary": on_canary}


@pytest.mark.slow  # over 10 s of real processes: the test command's second step
def test_canary_that_fails_requests_is_rolled_back_at_its_first_step(project, record_property):
    """smg's retries on (the default): the canary's failures are retried on the old replicas."""
    project.write("main.yaml", config(3, FAILING_CANARY))
    project.run("apply", "--auto-approve")
    seen = roll_out_failing_canary(project, record_property, "canary")
    load = seen["load"]
    assert any(r[2] for r in seen["on_canary"]), "the canary answered some requests itself"
    assert not load.failures, f"smg retried every failure of the canary elsewhere: {load.summary()}"


@pytest.mark.slow
def test_canary_failures_reach_clients_only_within_its_share_when_router_retries_are_off(project, record_property):
    """`retries: {enabled: false}`: clients see the canary's failures, at most its share of the traffic."""
    project.write("main.yaml", config(3, FAILING_CANARY))
    project.run("apply", "--auto-approve")
    project.write("main.yaml", config(3, FAILING_CANARY, router_extra="retries: {enabled: false}"))
    plan = project.run("plan")
    assert "router.front must be replaced" in plan.stdout, plan.stdout
    assert '+ retries = {"enabled": false}  # forces replacement' in plan.stdout, plan.stdout
    project.run("apply", "--auto-approve")  # a new smg, launched with --disable-retries

    seen = roll_out_failing_canary(project, record_property, "canary_no_retries")
    failures = seen["load"].failures
    assert failures, "with retries off the clients see some of the canary's failures"
    assert all(who == seen["canary_url"] for *_, who in failures), "every failure came from the canary"
    assert len(failures) <= seen["allowed"], seen["load"].summary()


def test_golden_prompt_failure_stops_the_rollout_before_any_traffic(project, record_property):
    rollout = """
strategy: canary
steps: [50, 100]
golden_prompts:
  - {prompt: "What is six times seven?", contains: ["42"]}
analysis:
  window_s: 1
  min_requests: 1
  gates:
    - {metric: error_rate, max: 0.5}
"""
    project.write("main.yaml", config(2, rollout))
    project.run("apply", "--auto-approve")  # creating replicas runs no rollout, so no golden check
    old = {r.attributes["endpoint"] for r in replicas(project)}
    router = endpoint(project)
    seen: set[str] = set()
    polling = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=5, trust_env=False) as c:
            while not polling.is_set():
                try:
                    seen.update(w["url"] for w in c.get(f"{router}/workers").json().get("workers", []))
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        with Load(router) as load:
            bad = project.run("apply", "--auto-approve", "--var", "rev=bbb2222", check=False)
    finally:
        polling.set()
        poller.join(10)
    out = bad.stdout + bad.stderr
    record(record_property, "golden", load)
    assert bad.returncode == 1 and "golden" in out and "42" in out, out
    log = audit(project)
    golden = [a.details for a in log if a.event == "rollout-gate" and a.details["gate"].startswith("golden")]
    assert golden and golden[0]["passed"] is False
    new_url = golden[0]["evidence"]["endpoint"]
    assert new_url not in old
    assert not [a for a in log if a.event == "rollout-step" and a.details.get("step") == "weight"]
    assert "rollback" in [a.event for a in log]
    assert seen == old, f"the router only ever held the old workers: {seen}"
    assert not load.failures and {who for *_, who in load.records} <= old, load.summary()
    assert revisions(project) == ["aaa1111"] * 2 and not replicas(project, deposed=True)


def test_recreate_warns_capacity_drops_to_zero_and_applies(project):
    project.write("main.yaml", config(2, "strategy: recreate", router=False))
    project.run("apply", "--auto-approve")
    plan = project.run("plan", "--var", "rev=bbb2222")
    assert "capacity of fleet.chat drops to zero" in plan.stdout, plan.stdout
    project.run("apply", "--auto-approve", "--var", "rev=bbb2222")
    assert revisions(project) == ["bbb2222"] * 2 and not replicas(project, deposed=True)
    with httpx.Client(timeout=5, trust_env=False) as c:
        for r in replicas(project):
            assert c.get(r.attributes["endpoint"] + "/health").status_code == 200


def test_sim_counts_simulated_failures_and_time_per_output_token():
    """The gates read the servers' own metrics: failed requests and TPOT are there."""
    from infraplan.serving.sim import SimConfig, make_server
    from infraplan.serving.sglang_client import SGLangClient, histogram_mean, metric_total

    def serve(**kw):
        server = make_server(SimConfig(model_path="org/tiny", served_model_name="tiny", port=0, **kw))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"

    failing, url = serve(error_rate=1.0, ttft_ms=0, tpot_ms=0)
    try:
        with httpx.Client(trust_env=False) as h:
            codes = [h.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                                  "max_tokens": 2}).status_code for _ in range(3)]
        with SGLangClient(url) as c:
            m = c.metrics()
    finally:
        failing.shutdown()
        failing.server_close()
    assert codes == [500] * 3
    assert metric_total(m, "sglang:num_aborted_requests_total") == 3
    assert metric_total(m, "sglang:num_requests_total") == 3

    paced, url = serve(ttft_ms=5, tpot_ms=20)
    try:
        with SGLangClient(url) as c:
            c.chat([{"role": "user", "content": "x"}], max_tokens=5)
            m = c.metrics()
    finally:
        paced.shutdown()
        paced.server_close()
    tpot = "sglang:request_time_per_output_token_seconds"  # SGLang 0.5.23's name
    assert metric_total(m, tpot + "_count") == 1
    assert histogram_mean(m, tpot) == pytest.approx(0.02, abs=0.015)
    assert {s.labels["le"] for s in m[tpot + "_bucket"]} >= {"0.02", "2.0", "+Inf"}
    assert metric_total(m, "sglang:num_aborted_requests_total") == 0

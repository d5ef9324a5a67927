"""Rolling 4 replicas behind the real SGLang Model Gateway (smg) under real HTTP load."""

from __future__ import annotations

import threading

import httpx
import pytest

pytest.importorskip("smg")

from infraplan.models.config import RolloutBlock  # noqa: E402
from infraplan.rollout.strategies import run_rollout  # noqa: E402
from infraplan.rollout.traffic import RouterSwitch, find_routers, switch_for  # noqa: E402
from infraplan.models.kinds import ResourceKind

from helpers.rollout import FLEET  # noqa: E402

pytestmark = pytest.mark.e2e
MAX_REQUESTS = 5000


@pytest.mark.slow
def test_rolling_behind_smg_fails_no_request(rollout_fleet):
    fleet = rollout_fleet(4)
    attrs = {"kind": "router", "policy": "round_robin", "port": None, "labels": {},
             "worker_sets": [fleet.endpoints()]}
    attrs = fleet.provider.prepare_create(ResourceKind.ROUTER, "router.gw", attrs)
    fleet.store.record_intent("router.gw", action="create", kind="router", provider="local", attributes=attrs,
                              dependencies=[FLEET])
    router = fleet.provider.create(ResourceKind.ROUTER, "router.gw", attrs)
    fleet.store.record_result("router.gw", attributes=router)
    assert [r.address for r in find_routers(fleet.store, FLEET)] == ["router.gw"]

    sent, failed, served = 0, [], set()
    stop = threading.Event()

    def load() -> None:
        nonlocal sent
        with httpx.Client(timeout=10, trust_env=False) as c:
            while not stop.is_set() and sent < MAX_REQUESTS:
                try:
                    r = c.post(f"{router['endpoint']}/v1/chat/completions",
                               json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 2})
                    if r.status_code != 200:
                        failed.append((r.status_code, r.text[:100]))
                    served.add(r.headers.get("x-smg-routed-worker-id"))
                except httpx.HTTPError as e:
                    failed.append(repr(e))
                sent += 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        ctx = fleet.context(RolloutBlock(strategy="rolling"), fleet.changes("r2"), traffic=None)
        assert isinstance(switch_for(ctx), RouterSwitch)
        result = run_rollout(ctx)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert not result.rolled_back
    assert sent > 20 and failed == []
    new = set(fleet.endpoints())
    assert new & served  # traffic reached the new version through the router
    rec = fleet.store.get("router.gw")
    assert sorted(rec.attributes["workers"]) == sorted(new) and rec.status == "ready"

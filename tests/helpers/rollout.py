"""Real sim replicas in a real state file, behind an in-memory traffic switch (a uniquely named
module: test modules import it, `conftest` would be whichever conftest was imported last)."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from infraplan.plan.model import Change
from infraplan.providers.contract import ProviderContext
from infraplan.rollout import RolloutContext
from infraplan.rollout.traffic import MemorySwitch
from infraplan.state import StateStore
from infraplan_providers.local.provider import LocalProvider
from infraplan.models.kinds import ResourceKind

FLEET = "fleet.chat"


def replica_attrs(index: int, revision: str = "r1", **sim) -> dict:
    return {
        "fleet": FLEET, "index": index, "engine": "sim", "model": "model.m", "model_source": "hf://org/tiny",
        "model_revision": revision, "served_name": "tiny", "args": {}, "env": {},
        "sim": {"ttft_ms": 1.0, "tpot_ms": 1.0, "error_rate": 0.0, "startup_s": 0.0, "seed": 0, **sim},
        "accelerators": None, "port": None, "labels": {}, "region": None, "cloud": None,
    }


class Fleet:
    """N running replicas recorded in state, and the changes that replace them."""

    def __init__(self, tmp_path, n: int):
        self.store = StateStore(tmp_path / "state.db")
        self.provider = LocalProvider(ProviderContext(
            project_dir=tmp_path, state_path=tmp_path / "state.db", runtime_dir=tmp_path / "run",
            settings={"ready_timeout_s": 20, "stop_timeout_s": 2}, name="local"))
        self.n = n
        self.events: list[dict] = []

        def up(i: int) -> None:
            addr = f"{FLEET}[{i}]"
            attrs = self.provider.prepare_create(ResourceKind.REPLICA, addr, replica_attrs(i))
            self.store.record_intent(addr, action="create", kind="replica", provider="local", attributes=attrs,
                                     dependencies=["model.m"])
            self.store.record_result(addr, attributes=self.provider.create(ResourceKind.REPLICA, addr, attrs))

        with ThreadPoolExecutor(n) as pool:
            list(pool.map(up, range(n)))
        self.switch = MemorySwitch(self.endpoints())

    def endpoints(self) -> list[str]:
        return [self.store.get(f"{FLEET}[{i}]").attributes["endpoint"] for i in range(self.n)]

    def changes(self, revision: str = "r2", **sim) -> list[Change]:
        out = []
        for i in range(self.n):
            addr = f"{FLEET}[{i}]"
            out.append(Change(address=addr, kind="replica", action="replace", provider="local",
                              provider_type="local", before=self.store.get(addr).attributes,
                              after=replica_attrs(i, revision, **sim), requires_replace=["model_revision"],
                              dependencies=["model.m"], fleet=FLEET))
        return out

    def context(self, spec, changes, **kw) -> RolloutContext:
        kw.setdefault("traffic", self.switch)
        return RolloutContext(store=self.store, provider=self.provider, fleet=FLEET, spec=spec, changes=changes,
                              emit=self.events.append, resolve=lambda a, u: a, stop=threading.Event(), **kw)

    def cleanup(self) -> None:
        for rec in self.store.resources():
            try:
                self.provider.delete(rec.kind, rec.address, rec.attributes)
            except Exception:  # noqa: BLE001 - best effort, the session fixture checks leftovers
                pass
        self.store.close()


class Load:
    """Real requests, one at a time, to a worker the switch holds while it holds it.

    `resolve` turns what the switch holds into servers (a service's load balancer into
    its replicas at that moment); by default each worker is a server.
    """

    def __init__(self, switch, resolve=lambda worker: [worker]):
        self.switch, self.resolve, self.sent, self.failed = switch, resolve, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rr = itertools.count()
        with httpx.Client(timeout=10, trust_env=False) as client:
            while not self.stop.is_set():
                with self.switch.lock:  # the worker cannot leave the switch while a request is on it
                    workers = [u for w in self.switch.held() for u in self.resolve(w)]
                    url = workers[next(rr) % len(workers)]
                    try:
                        r = client.post(f"{url}/v1/chat/completions",
                                        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
                        ok = r.status_code == 200
                    except httpx.HTTPError as e:
                        ok, r = False, e
                    self.sent += 1
                    if not ok:
                        self.failed.append((url, str(r)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)

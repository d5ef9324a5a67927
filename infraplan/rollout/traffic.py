"""Moving a fleet's traffic: which workers the routers in front of it hold.

A `TrafficSwitch` adds and removes worker URLs. `RouterSwitch` drives every router
in state that fronts the fleet through smg's ``/workers`` API (new workers are
registered and serving before old ones are removed; smg drains those), and records
the workers each router holds in state (intent before, result after). `NoRouter` is
what a fleet without a router gets: only rolling (replacement order) works then.
`MemorySwitch` holds an in-memory list (tests, dry runs).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from infraplan.errors import ApplyError

from infraplan.plan.rollout_checks import NEEDS_ROUTER  # noqa: E402,F401  (re-exported for the strategies)
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind


class TrafficSwitch(Protocol):
    """Where a fleet's requests go."""

    def held(self) -> list[str]:
        """Worker URLs that take new requests."""

    def set(self, add: list[str], remove: list[str]) -> None:
        """Start sending to `add` (ready once it returns), then stop sending to `remove`."""


class NoRouter:
    """No router in front of the fleet: clients use the replicas' endpoints directly."""

    routed = False

    def held(self) -> list[str]:
        return []

    def set(self, add: list[str], remove: list[str]) -> None:
        return None


class MemorySwitch:
    """An in-memory list of workers; `history` has the list after every change."""

    routed = True

    def __init__(self, workers: list[str] | None = None):
        self.lock = threading.RLock()
        self.workers: list[str] = list(workers or [])
        self.history: list[list[str]] = [list(self.workers)]

    def held(self) -> list[str]:
        with self.lock:
            return list(self.workers)

    def set(self, add: list[str], remove: list[str]) -> None:
        with self.lock:
            for u in add:
                if u not in self.workers:
                    self.workers.append(u)
            self.history.append(list(self.workers))
            self.workers = [u for u in self.workers if u not in remove]
            self.history.append(list(self.workers))


def _fronts(record: Any, fleet: str, endpoints: set[str]) -> bool:
    attrs = record.attributes or {}
    if fleet in (record.dependencies or []) or fleet in (attrs.get("fleets") or []):
        return True
    sets = attrs.get("worker_sets")
    flat = [u for s in sets if isinstance(s, list) for u in s] if isinstance(sets, list) else []
    if any(isinstance(s, str) and s.startswith("${" + fleet + ".") for s in (sets or [])):
        return True
    return bool(endpoints & set(flat + list(attrs.get("workers") or [])))


def find_routers(store: Any, fleet: str) -> list[Any]:
    """Router records in state in front of `fleet` (by dependency, `fleets` attribute or workers)."""
    records = store.resources(include_deposed=False)
    endpoints = {r.attributes.get("endpoint") for r in records
                 if r.kind == ResourceKind.REPLICA and r.attributes.get("fleet") == fleet} - {None}
    return [r for r in records if r.kind == ResourceKind.ROUTER and _fronts(r, fleet, endpoints)]


class RouterSwitch:
    """The smg routers in front of a fleet, driven through their ``/workers`` API."""

    routed = True

    def __init__(self, store: Any, routers: list[str], timeout: float = 30.0):
        self.store = store
        self.routers = list(routers)
        self.timeout = timeout

    def _client(self, attributes: dict):
        # the local provider's smg client: the same HTTP API for any smg, local or in a cloud
        from infraplan.serving.smg import SmgClient

        return SmgClient.for_router(attributes)

    def held(self) -> list[str]:
        out: list[str] = []
        for addr in self.routers:
            rec = self.store.get(addr)
            with self._client(rec.attributes) as c:
                out += [u for u in c.serving() if u not in out]
        return out

    def set(self, add: list[str], remove: list[str]) -> None:
        for addr in self.routers:
            rec = self.store.get(addr)
            if rec is None:
                raise ApplyError(f"{addr} is no longer in state")
            with self._client(rec.attributes) as c:
                have = c.serving()
                want = [u for u in have if u not in remove] + [u for u in add if u not in have]
                attrs = dict(rec.attributes)
                self.store.record_intent(addr, action=Action.UPDATE, kind=rec.kind, provider=rec.provider,
                                         attributes={**attrs, "workers": sorted(want)})
                try:
                    held = c.sync(want, timeout=self.timeout)
                except Exception as exc:  # noqa: BLE001 - recorded, then raised as ApplyError
                    self.store.record_failure(addr, f"switching workers: {exc}")
                    raise ApplyError(f"{addr}: switching workers failed: {exc}") from exc
                self.store.record_result(addr, attributes={**attrs, "workers": held})


def switch_for(ctx: Any) -> Any:
    """The switch a rollout uses: `ctx.traffic` if given, else the fleet's routers, else NoRouter."""
    if ctx.traffic is not None:
        return ctx.traffic
    routers = [r.address for r in find_routers(ctx.store, ctx.fleet)]
    return RouterSwitch(ctx.store, routers) if routers else NoRouter()

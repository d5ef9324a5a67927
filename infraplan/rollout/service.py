"""Canary of a fleet served as one service (SkyServe): a separate canary service behind the router.

This is Flagger's primary/canary. The fleet's service (the *primary*) keeps serving
the old version; the new version runs as a separate *canary* service with as many
replicas (`RunsServices.create_canary`: a provider capability), whose replicas pass readiness and the golden
prompts before any traffic reaches them. The routers in front of the fleet then hold
the primary's replicas instead of its load balancer (the same servers, so nothing
moves), and each step swaps primary replicas for canary ones as
`weights.plan_steps` says, judged by the analysis gates against the primary's
replicas. At 100% only the canary serves: the primary is updated in place to the new
version (the provider's `update`, a SkyServe rolling update), the routers go back to
what they held before, and the canary service is deleted.

A failed gate puts the routers back and deletes the canary service; the primary was
never touched. The canary service is in state as a deposed object of the fleet's
first slot from before it is asked for until it is gone, so an apply that dies on
the way leaves it for the next plan to destroy.
"""

from __future__ import annotations

import secrets
from typing import Any

from infraplan.errors import ApplyError, InfraplanError
from infraplan.providers.contract import RunsServices
from infraplan.plan import weights as _weights
from infraplan.rollout.slots import Abort as _Abort, Slot
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind


class ServiceCanary:
    """One canary of a service fleet, driven by a strategies `_Runner` (events, gates, switch)."""

    def __init__(self, runner: Any):
        self.r = runner
        self.store = runner.store
        self.owner = runner.updates[0]  # slot 0: it owns the service
        if not isinstance(runner.provider, RunsServices):
            raise ApplyError(f"{runner.ctx.fleet}: a canary of a fleet updated in place needs a provider that runs "
                             f"services (the RunsServices capability); the {runner.provider.name} provider has "
                             "none: use rollout strategy rolling or blue_green")
        self.provider: RunsServices = runner.provider
        self.key = ""                   # deposed key of the canary's state record
        self.canary: dict | None = None  # its attributes once created
        self.held_before: list[str] = []
        self.added: set[str] = set()     # workers this rollout put in the routers (the only ones it removes)

    # -- state of the canary service -------------------------------------------------
    def _create_canary(self, desired: dict, replicas: int) -> dict:
        attrs = {**desired, "canary": True}
        self.key = "canary-" + secrets.token_hex(3)
        self.store.record_intent(self.owner.address, action=Action.CREATE, kind=ResourceKind.REPLICA, provider=self.r._pname(),
                                 attributes=attrs, dependencies=self.owner.dependencies, deposed=self.key)
        try:
            made = self.provider.create_canary(self.owner.address, attrs, replicas)
        except InfraplanError as exc:
            self.store.record_failure(self.owner.address, f"{type(exc).__name__}: {exc}", deposed=self.key)
            self.canary = attrs  # whatever was started is removed by the rollback
            raise _Abort(f"the canary service did not start: {exc}") from None
        self.store.record_result(self.owner.address, attributes=made, deposed=self.key)
        self.canary = made
        return made

    def _delete_canary(self) -> None:
        if self.canary is None:
            return
        self.store.record_intent(self.owner.address, action=Action.DELETE, kind=ResourceKind.REPLICA, provider=self.r._pname(),
                                 attributes=self.canary, deposed=self.key)
        try:
            self.r.provider.delete(ResourceKind.REPLICA, self.owner.address, self.canary)
        except BaseException as exc:
            self.store.record_failure(self.owner.address, f"deleting the canary service: {exc}", deposed=self.key)
            raise
        self.store.remove(self.owner.address, deposed=self.key, missing_ok=True)
        self.canary = None

    # -- the rollout -------------------------------------------------------------------
    def run(self) -> None:
        r = self.r
        prior = self.store.get(self.owner.address)
        if prior is None:
            raise ApplyError(f"{self.owner.address} is no longer in state")
        prior_attrs = dict(prior.attributes)
        replicas = len([x for x in self.store.resources(include_deposed=False)
                        if x.kind == ResourceKind.REPLICA and (x.attributes or {}).get("fleet") == r.ctx.fleet])
        base = self.provider.service_workers(self.owner.address, prior_attrs)
        if not base:
            raise ApplyError(f"{r.ctx.fleet}: the service has no ready replica to compare a canary with; "
                             "nothing was changed")
        self.held_before = r.switch.held()
        desired = r._desired(self.owner)
        try:
            made = self._create_canary(desired, max(replicas, 1))
            workers = list(made.get("workers") or [])
            r.step("canary-service", detail=f"{made.get('service_name') or 'canary service'}: {len(workers)} "
                   f"replicas of the new version beside the service's {len(base)}", workers=workers)
            for i, url in enumerate(workers):
                r.check(Slot(f"{r.ctx.fleet} canary replica {i + 1}", [], new={"endpoint": url}))
            # the routers hold the primary's replicas instead of its load balancer: the same servers
            # (other fleets' workers in the same routers are left alone)
            lb = prior_attrs.get("endpoint")
            routed = list(base)
            self.added.update(u for u in base if u not in self.held_before)
            r.switch.set(base, [lb] if lb in self.held_before and lb not in base else [])
            for shape in _weights.plan_steps(list(r.spec.steps), len(workers), len(base)):
                want = workers[:shape.new] + base[:shape.old]
                self.added.update(u for u in want if u not in self.held_before)
                r.switch.set([u for u in want if u not in routed], [u for u in routed if u not in want])
                routed = want
                r.step("weight", detail=f"{shape.target:g}% asked, {shape.share:.0f}% reached",
                       target=shape.target, share=round(shape.share, 2), new=shape.new, old=shape.old)
                r._judge(f"canary {shape.target:g}%", workers[:shape.new], base)
                if r.spec.pause_s and shape.old:
                    r.stop.wait(r.spec.pause_s)
            r.step("promote", detail="the service is updated to the new version in place while the canary "
                   "service takes all traffic")
            self._promote()
        except BaseException:
            self._restore()
            raise
        r.switch.set(self.held_before, sorted(self.added - set(self.held_before)))
        r.step("routers", detail="routers back on the service's load balancer")
        self._delete_canary()

    def _promote(self) -> None:
        r = self.r
        for c in r.updates:  # slot 0 first: it redeploys the service; the others record it
            rec = self.store.get(c.address)
            before = dict(rec.attributes) if rec is not None else dict(c.before or {})
            desired = r._desired(c)
            self.store.record_intent(c.address, action=Action.UPDATE, kind=ResourceKind.REPLICA, provider=c.provider,
                                     attributes=desired, dependencies=c.dependencies)
            try:
                new = self.r.provider.update(ResourceKind.REPLICA, c.address, before, desired)
            except InfraplanError as exc:
                # the old version stays recorded: the routers go back to the service, which SkyServe
                # kept serving through the failed update, and the next plan offers the canary again
                self.store.record_result(c.address, attributes=before, dependencies=c.dependencies)
                raise _Abort(f"{c.address}: promoting the new version failed: {exc}") from None
            self.store.record_result(c.address, attributes=new, dependencies=c.dependencies)

    def _restore(self) -> None:
        """Routers back to what they held before; the canary service removed (problems noted, not raised)."""
        r = self.r
        try:
            r.switch.set(self.held_before, sorted(self.added - set(self.held_before)))
        except InfraplanError as exc:
            r.problems.append(f"switching traffic back: {exc}")
        try:
            self._delete_canary()
        except InfraplanError as exc:
            r.problems.append(f"deleting the canary service: {exc}")

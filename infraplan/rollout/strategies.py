"""The rollout strategies: recreate, rolling, blue_green and canary.

Every provider call follows the executor's crash-safe pattern: the intent is written
to state before it and the result right after it. A new replica of a replacement is
created at the replica's own address after `store.depose(address)`, so the old object
stays in state (deposed) while it still serves; a rollback deletes the new object and
`undepose`s the old one. Traffic moves only through the `TrafficSwitch` (the routers),
and only to replicas that passed readiness (health plus a real generation) and the
golden prompts. Each step, gate and rollback is an audit event.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from infraplan.errors import ApplyError, InfraplanError
from infraplan.plan.rollout_checks import check_spec
from infraplan.rollout import RolloutContext, RolloutFailed, RolloutResult, fingerprint
from infraplan.rollout.slots import Abort as _Abort, Slot
from infraplan.rollout import analysis as _analysis
from infraplan.rollout import golden as _golden
from infraplan.rollout import traffic as _traffic
from infraplan.plan import weights as _weights
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind


def run_rollout(ctx: RolloutContext) -> RolloutResult:
    """Replace `ctx.fleet`'s replicas by `ctx.spec.strategy`; returns the steps taken.

    Raises RolloutFailed (after rolling back: traffic on the old version, new replicas
    removed, the rollback recorded in state, audited and alerted) when a readiness
    check, golden prompt or SLO gate fails; ApplyError when it cannot start at all.
    """
    strategy = ctx.spec.strategy
    runner = _Runner(ctx)
    fn = {"rolling": runner.rolling, "canary": runner.canary, "blue_green": runner.blue_green,
          "recreate": runner.recreate, "default": runner.rolling}.get(strategy)
    if strategy == "canary" and runner.updates:
        from infraplan.rollout.service import ServiceCanary

        fn = ServiceCanary(runner).run
    if fn is None:
        raise ApplyError(f"{ctx.fleet}: unknown rollout strategy {strategy!r}")
    if strategy in _traffic.NEEDS_ROUTER and not getattr(runner.switch, "routed", True):
        raise ApplyError(check_spec(ctx.fleet, ctx.spec, has_router=False)[0])
    runner.step("start", strategy=strategy, replace=[c.address for c in runner.replaces],
                create=[c.address for c in runner.creates], delete=[c.address for c in runner.deletes])
    try:
        fn()
    except _Abort as abort:
        runner.rollback(abort.reason, abort.evidence)
        raise RolloutFailed(f"{ctx.fleet}: rollout rolled back: {abort.reason}", abort.evidence,
                            runner.result) from None
    runner.step("done")
    runner.alert(f"infraplan: {ctx.fleet} rolled out ({strategy})", "\n".join(
        f"{s['step']}: {s.get('detail', '')}" for s in runner.result.steps), "success")
    return runner.result


class _Runner:
    def __init__(self, ctx: RolloutContext):
        self.ctx, self.spec, self.store, self.provider = ctx, ctx.spec, ctx.store, ctx.provider
        self.switch = _traffic.switch_for(ctx)
        self.result = RolloutResult(ctx.fleet, ctx.spec.strategy)
        self.stop = ctx.stop or threading.Event()
        live = [c for c in ctx.changes if c.kind == ResourceKind.REPLICA and not c.deposed]
        order = lambda c: ((c.after or c.before or {}).get("index", 0), c.address)  # noqa: E731
        self.replaces = sorted((c for c in live if c.action == Action.REPLACE), key=order)
        self.creates = sorted((c for c in live if c.action == Action.CREATE), key=order)
        self.deletes = sorted((c for c in live if c.action == Action.DELETE), key=order)
        self.updates = sorted((c for c in live if c.action == Action.UPDATE), key=order)  # slots of a service fleet
        self.slots: list[Slot] = []          # every slot touched, for rollback
        self.deleted: list[Slot] = []        # removed replicas (scale-down), for rollback
        self.problems: list[str] = []        # what went wrong while rolling back, found before `rollback`
        first = next((c.after for c in self.replaces + self.creates + self.updates if c.after), {}) or {}
        self.model = first.get("served_name")
        self.api_key = (first.get("args") or {}).get("api_key")
        self.fingerprint = fingerprint(first)

    # -- events ------------------------------------------------------------------------
    def step(self, name: str, **details: Any) -> None:
        entry = {"step": name, "at": time.time(), **details}
        self.result.steps.append(entry)
        self.store.audit("rollout-step", address=self.ctx.fleet, details=entry, who=self.ctx.who or None)
        self.ctx.emit({"type": "rollout", "fleet": self.ctx.fleet, **entry})

    def gate(self, name: str, passed: bool, evidence: dict) -> None:
        entry = {"gate": name, "passed": passed, "evidence": evidence}
        self.result.steps.append({"step": f"gate:{name}", "passed": passed})
        self.store.audit("rollout-gate", address=self.ctx.fleet, details=entry, who=self.ctx.who or None)
        self.ctx.emit({"type": "rollout", "fleet": self.ctx.fleet, "step": f"gate:{name}", "passed": passed})

    def alert(self, title: str, body: str, level: str) -> None:
        if not self.ctx.alert_urls:
            return
        from infraplan.alerts import send_alert

        try:
            send_alert(self.ctx.alert_urls, title, body, level)
        except Exception as exc:  # noqa: BLE001 - an alert must never break a rollout
            self.ctx.emit({"type": "rollout", "fleet": self.ctx.fleet, "step": "alert-failed", "error": str(exc)})

    # -- replica operations (intent before each provider call, result right after) -------
    def _desired(self, change: Any) -> dict:
        attrs = self.ctx.resolve(dict(change.after or {}), list(change.after_unknown or []))
        return {k: v for k, v in attrs.items() if k not in self.provider.computed}

    def _create(self, address: str, desired: dict, deps: list[str]) -> dict:
        attrs = self.provider.prepare_create(ResourceKind.REPLICA, address, desired)
        self.store.record_intent(address, action=Action.CREATE, kind=ResourceKind.REPLICA, provider=self._pname(),
                                 attributes=attrs, dependencies=deps)
        try:
            new = self.provider.create(ResourceKind.REPLICA, address, attrs)
        except BaseException as exc:
            self.store.record_failure(address, f"{type(exc).__name__}: {exc}")
            self.store.remove(address, missing_ok=True)
            raise
        self.store.record_result(address, attributes=new, dependencies=deps)
        return new

    def _pname(self) -> str | None:
        c = (self.replaces + self.creates + self.deletes + self.updates)
        return c[0].provider if c else None

    def _delete(self, address: str, attrs: dict, deposed: str = "") -> None:
        self.store.record_intent(address, action=Action.DELETE, kind=ResourceKind.REPLICA, provider=self._pname(),
                                 attributes=attrs, deposed=deposed)
        try:
            self.provider.delete(ResourceKind.REPLICA, address, attrs)
        except BaseException as exc:
            self.store.record_failure(address, f"{type(exc).__name__}: {exc}", deposed=deposed)
            raise
        self.store.remove(address, deposed=deposed, missing_ok=True)

    def bring_up(self, slot: Slot, desired: dict) -> Slot:
        """Create the new object of `slot` beside the old one (deposed), then check it."""
        if slot.old is not None and slot.old_alive and not slot.key and self.store.get(slot.address) is not None:
            slot.key = self.store.depose(slot.address)
        try:
            slot.new = self._create(slot.address, desired, slot.dependencies)
        except InfraplanError as exc:
            self._restore_old(slot)
            raise _Abort(f"{slot.address}: the new replica did not start: {exc}") from None
        self.check(slot)
        return slot

    def _restore_old(self, slot: Slot) -> None:
        if slot.key and self.store.get(slot.address) is None:
            self.store.undepose(slot.address, slot.key)
            slot.key = ""

    def check(self, slot: Slot) -> None:
        """Readiness (/ready, or /health where the server has no /ready; /health_generate; a real
        generation) then golden prompts."""
        url, spec = slot.new_url, self.spec
        from infraplan.serving.sglang_client import SGLangClient

        deadline = time.monotonic() + spec.readiness_timeout_s
        why = "not checked"
        with SGLangClient(url, api_key=self.api_key, timeout=10.0, retries=1) as c:
            while True:
                try:
                    if not c.ready_or_health():
                        why = "/ready (or /health) does not answer 200"
                    elif not c.health_generate():
                        why = "/health_generate does not answer 200"
                    else:
                        out = c.chat([{"role": "user", "content": "ping"}], max_tokens=1, model=self.model)
                        if (out.get("usage") or {}).get("completion_tokens", 0) >= 1 or out.get("choices"):
                            break
                        why = "a one-token generation returned nothing"
                except InfraplanError as exc:
                    why = f"a one-token generation failed: {exc}"
                if time.monotonic() > deadline or self.stop.is_set():
                    self.gate(f"readiness {slot.address}", False, {"endpoint": url, "why": why})
                    raise _Abort(f"{slot.address}: not ready after {spec.readiness_timeout_s:g}s: {why}",
                                 {"readiness": {"address": slot.address, "endpoint": url, "why": why}})
                time.sleep(0.2)
        self.gate(f"readiness {slot.address}", True, {"endpoint": url})
        if spec.golden_prompts:
            report = _golden.run_golden(url, spec.golden_prompts, model=self.model, api_key=self.api_key)
            evidence = {"endpoint": url, "results": report.results}
            self.gate(f"golden {slot.address}", report.passed, evidence)
            if not report.passed:
                raise _Abort(f"{slot.address}: golden prompts failed: {'; '.join(report.failures())}",
                             {"golden": evidence})

    def retire(self, slot: Slot) -> None:
        """Delete the old object of `slot` (it no longer takes traffic)."""
        if slot.old is not None and slot.old_alive:
            self._delete(slot.address, slot.old, deposed=slot.key)
            slot.old_alive, slot.key = False, ""

    def _parallel(self, fn, items: list) -> list:
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=len(items)) as pool:
            futures = [pool.submit(fn, i) for i in items]
            errors = [f.exception() for f in futures]
            for e in errors:
                if e is not None:
                    raise e
            return [f.result() for f in futures]

    def _slot(self, change: Any) -> Slot:
        rec = self.store.get(change.address) if change.action != Action.CREATE else None
        slot = Slot(change.address, list(change.dependencies or []), old=dict(rec.attributes) if rec else None)
        self.slots.append(slot)
        return slot

    # -- strategies --------------------------------------------------------------------
    def rolling(self) -> None:
        surge, unavailable = self.spec.max_surge, self.spec.max_unavailable
        size = surge + unavailable
        pairs = [(self._slot(c), c) for c in self.replaces]
        for b in range(0, len(pairs), size):
            batch = pairs[b:b + size]
            first_out = batch[:unavailable]  # these may go before their successors are ready
            if first_out:
                self.switch.set([], [s.old_url for s, _ in first_out if s.old_url])
                for s, _ in first_out:
                    self.retire(s)
            self._parallel(lambda sc: self.bring_up(sc[0], self._desired(sc[1])), batch)
            self.switch.set([s.new_url for s, _ in batch], [s.old_url for s, _ in batch[unavailable:] if s.old_url])
            for s, _ in batch[unavailable:]:
                self.retire(s)
            self.step("batch", detail=f"{', '.join(s.address for s, _ in batch)} replaced",
                      replaced=[s.address for s, _ in batch], serving=len(self.switch.held()))
        self._scale()

    def _scale(self) -> None:
        """Replicas added (created, checked, then routed) and removed (unrouted, then deleted)."""
        if self.creates:
            added = [(self._slot(c), c) for c in self.creates]
            self._parallel(lambda sc: self.bring_up(sc[0], self._desired(sc[1])), added)
            self.switch.set([s.new_url for s, _ in added], [])
        self._remove_deleted()

    def _remove_deleted(self) -> None:
        if not self.deletes:
            return
        gone = []
        for c in self.deletes:
            rec = self.store.get(c.address)
            if rec is not None:
                gone.append(Slot(c.address, list(rec.dependencies), old=dict(rec.attributes)))
        self.switch.set([], [s.old_url for s in gone if s.old_url])
        for s in gone:
            self._delete(s.address, s.old)
        self.step("scale-down", detail=f"{len(gone)} removed", removed=[s.address for s in gone])

    def canary(self) -> None:
        new_changes = self.replaces + self.creates
        old_slots = [self._slot(c) for c in self.replaces]
        extra_old = [self.store.get(c.address) for c in self.deletes]
        old_urls = [s.old_url for s in old_slots] + [r.attributes.get("endpoint") for r in extra_old if r]
        old_urls = [u for u in old_urls if u]
        by_address = {s.address: s for s in old_slots}
        made: list[Slot] = []
        routed: list[str] = list(old_urls)
        for shape in _weights.plan_steps(list(self.spec.steps), len(new_changes), len(old_urls)):
            while len(made) < shape.new:
                c = new_changes[len(made)]
                slot = by_address.get(c.address) or self._slot(c)
                made.append(self.bring_up(slot, self._desired(c)))
            want = [s.new_url for s in made[:shape.new]] + old_urls[:shape.old]
            self.switch.set([u for u in want if u not in routed], [u for u in routed if u not in want])
            routed = want
            self.step("weight", detail=f"{shape.target:g}% asked, {shape.share:.0f}% reached",
                      target=shape.target, share=round(shape.share, 2), new=shape.new, old=shape.old)
            self._judge(f"canary {shape.target:g}%", [s.new_url for s in made[:shape.new]], old_urls)
            if self.spec.pause_s and shape.old:
                self.stop.wait(self.spec.pause_s)
        for s in old_slots:
            self.retire(s)
        self._remove_deleted_after_routing()

    def _remove_deleted_after_routing(self) -> None:
        for c in self.deletes:
            rec = self.store.get(c.address)
            if rec is not None:
                self._delete(c.address, dict(rec.attributes))

    def _judge(self, name: str, canary: list[str], baseline: list[str]) -> None:
        a = self.spec.analysis
        if not a.gates:
            return
        res = _analysis.analyze(canary, baseline, a, model=self.model, api_key=self.api_key, stop=self.stop)
        self.gate(name, res.passed, res.evidence())
        self.result.evidence = res.evidence()
        if not res.passed:
            raise _Abort(f"{name}: {res.reason}", res.evidence())

    def blue_green(self) -> None:
        from infraplan.models.types import parse_duration

        new_changes = self.replaces + self.creates
        by_address = {s.address: s for s in (self._slot(c) for c in self.replaces)}
        slots = [by_address.get(c.address) or self._slot(c) for c in new_changes]
        self._parallel(lambda sc: self.bring_up(sc[0], self._desired(sc[1])), list(zip(slots, new_changes)))
        old_urls = [s.old_url for s in by_address.values() if s.old_url]
        old_urls += [r.attributes.get("endpoint") for r in (self.store.get(c.address) for c in self.deletes) if r]
        new_urls = [s.new_url for s in slots]
        self._judge("blue_green new set", new_urls, old_urls)
        self.switch.set(new_urls, old_urls)
        self.step("switch", detail=f"traffic on the new set ({len(new_urls)} replicas)", new=new_urls)
        window = parse_duration(self.spec.rollback_window) if self.spec.rollback_window else 0.0
        deadline = time.monotonic() + window
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.spec.analysis.gates:
                self._judge("blue_green rollback window", new_urls, old_urls)
            else:
                self.stop.wait(max(0.0, deadline - time.monotonic()))
        for s in by_address.values():
            self.retire(s)
        self._remove_deleted_after_routing()

    def recreate(self) -> None:
        slots = [self._slot(c) for c in self.replaces]
        self.switch.set([], [s.old_url for s in slots if s.old_url])
        for s in slots:
            self.retire(s)
        self.step("stopped", detail=f"{len(slots)} old replicas stopped: no capacity until the new ones are up")
        self._parallel(lambda sc: self.bring_up(sc[0], self._desired(sc[1])), list(zip(slots, self.replaces)))
        self.switch.set([s.new_url for s in slots], [])
        self._scale()

    # -- rollback ----------------------------------------------------------------------
    def rollback(self, reason: str, evidence: dict) -> None:
        """Old version back in traffic, new replicas removed, old ones re-created where gone."""
        self.result.rolled_back, self.result.reason = True, reason
        self.result.evidence = evidence
        problems = self.problems

        def attempt(what: str, fn, *args) -> Any:
            try:
                return fn(*args)
            except (InfraplanError, _Abort) as exc:
                problems.append(f"{what}: {exc}")
                return None

        # 1. old replicas still running take traffic again
        alive_old = [s.old_url for s in self.slots if s.old is not None and s.old_alive and s.old_url]
        attempt("switching traffic back", self.switch.set, alive_old, [])
        # 2. where the old replica is gone (rolling, recreate), start the old version beside the new one
        new_keys: dict[str, str] = {}
        for s in self.slots:
            if s.old is None or s.old_alive:
                continue
            current = self.store.get(s.address)
            if current is not None:
                new_keys[s.address] = self.store.depose(s.address)
            restored = attempt(f"{s.address}: restarting the old version", self._create, s.address,
                               {k: v for k, v in s.old.items() if k not in self.provider.computed}, s.dependencies)
            if restored is None:
                if s.address in new_keys:
                    self.store.undepose(s.address, new_keys.pop(s.address))
                continue
            s.old, s.old_alive, s.key = restored, True, ""
            attempt("routing the restored replica", self.switch.set, [restored["endpoint"]], [])
        # 3. the new replicas leave traffic, then are deleted
        attempt("taking the new version out of traffic", self.switch.set, [],
                [s.new_url for s in self.slots if s.new_url])
        for s in self.slots:
            if s.new is None:
                continue
            if s.address in new_keys:
                attempt(f"{s.address}: deleting the new replica", self._delete, s.address, s.new, new_keys[s.address])
            else:
                cur = self.store.get(s.address)
                if cur is not None and cur.attributes.get("instance_id") == s.new.get("instance_id"):
                    if attempt(f"{s.address}: deleting the new replica", self._delete, s.address, s.new) is None \
                            and self.store.get(s.address) is not None:
                        continue
                attempt(f"{s.address}: restoring the old replica", self._restore_old, s)
            s.new = None
        details = {"reason": reason, "evidence": evidence, "fingerprint": self.fingerprint, "problems": problems}
        self.store.record_rollback(self.ctx.fleet, self.fingerprint, reason, evidence)
        self.store.audit("rollback", address=self.ctx.fleet, details=details, who=self.ctx.who or None)
        self.result.steps.append({"step": "rollback", "reason": reason, "problems": problems})
        self.ctx.emit({"type": "rollout", "fleet": self.ctx.fleet, "step": "rollback", "reason": reason})
        self.alert(f"infraplan: {self.ctx.fleet} rollout rolled back", reason
                   + (f"\nproblems during rollback: {'; '.join(problems)}" if problems else ""), "failure")

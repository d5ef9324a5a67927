"""Carry out a Plan: walk the apply graph concurrently, one provider call per node.

Every state write happens on the calling thread (SQLite connections are not shared);
worker threads only make provider calls. The intent of each provider call is
committed before the call starts, and its result before anything that depends on it
starts (writes are grouped per scheduling round), so a ``kill -9`` at any point
leaves a state from which the next plan is correct.

Apply graph nodes (``op``, key):
    write     a model or fleet entry (no provider) or a refreshed replica or router
    forget    remove a model or fleet entry
    create    create a replica or router (for a create-before-destroy replacement: depose the old one first)
    update    update a replica or router in place
    delete    delete a replica or router (or a deposed one: ``address#deposed``)

Traffic safety: the old object of a create-before-destroy replacement is deleted only
after everything that transitively depends on it (its fleet, a router in front of the
fleet) has been brought up to date, and a replica removed by a scale-down is deleted
only after the routers in front of its fleet stopped sending it requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
import queue
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import networkx as nx

from infraplan.errors import ApplyError, InfraplanError, Terminated, TransientProviderError
from infraplan.plan.model import Change, Plan
from infraplan.providers.registry import ProviderSet
from infraplan.util.retry import ATTEMPTS, call_with_retries
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind

Event = dict[str, Any]

log = logging.getLogger(__name__)


class Op(StrEnum):
    """What one apply-graph node does."""

    CREATE = "create"  # provider create (or the new object of a replacement)
    UPDATE = "update"  # provider update in place
    DELETE = "delete"  # provider delete (or the old object of a replacement)
    FORGET = "forget"  # drop a record that no provider backs (models, fleets)
    WRITE = "write"  # record what the plan says, no provider call
    ROLLOUT = "rollout"  # a fleet's replacements carried out by its rollout strategy


@dataclass
class Node:
    """One step of an apply: an operation on one change (the node's id is stable across runs)."""

    op: Op
    change: Change
    deposed: str = ""  # for deletes of deposed objects; filled in at run time for CBD
    group: list[Change] | None = None  # op "rollout": the fleet's replica replacements

    @property
    def id(self) -> str:
        suffix = ":old" if self.op == Op.DELETE and self.change.action == Action.REPLACE else ""
        return f"{self.op}:{self.change.key}{suffix}"


@dataclass
class ApplyResult:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    interrupted_by: str = ""  # "Ctrl-C" or "SIGTERM"
    abandoned: list[str] = field(default_factory=list)  # running when a second interrupt stopped the wait
    elapsed_s: float = 0.0
    added: int = 0
    changed: int = 0
    destroyed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and not self.interrupted

    def summary(self) -> dict[str, Any]:
        return {"done": len(self.done), "failed": len(self.failed), "skipped": len(self.skipped),
                "added": self.added, "changed": self.changed, "destroyed": self.destroyed,
                "interrupted": self.interrupted, "abandoned": len(self.abandoned),
                "elapsed_s": round(self.elapsed_s, 3)}

    def count(self, node: Node) -> None:
        """Tally a finished node as Terraform counts resources."""
        action = node.change.action
        if node.op == Op.ROLLOUT:
            self.added += len(node.group or [])
            self.destroyed += len(node.group or [])
        elif node.op in (Op.DELETE, Op.FORGET):
            self.destroyed += 1
        elif action in (Action.CREATE, Action.REPLACE):
            self.added += 1
        elif action == Action.UPDATE:
            self.changed += 1


ROLLOUT_STRATEGIES = ("recreate", "rolling", "blue_green", "canary")


def build_apply_graph(plan: Plan) -> nx.DiGraph:
    """Nodes are Node objects keyed by id; an edge u -> v means u must finish before v."""
    g = nx.DiGraph()
    by_addr: dict[str, Change] = {c.address: c for c in plan.changes if not c.deposed}
    fwd: dict[str, str] = {}   # address -> id of its create/update/write node
    rem: dict[str, str] = {}   # address -> id of the node removing the current object
    old: dict[str, str] = {}   # address -> id of the CBD "delete old" node

    def add(node: Node) -> str:
        g.add_node(node.id, node=node)
        return node.id

    # fleets whose replica replacements a rollout strategy carries out as one step
    groups: dict[str, list[Change]] = {}
    for c in plan.changes:
        if c.kind == ResourceKind.REPLICA and not c.deposed and c.fleet and (
                c.action == Action.REPLACE or (c.action == Action.UPDATE and c.rolls_out)):
            fleet = by_addr.get(c.fleet)
            strategy = ((fleet.after or {}).get("rollout") or {}).get("strategy") if fleet else None
            # a fleet served as one service: only its canary redeploys through a rollout step
            if strategy in ROLLOUT_STRATEGIES and (c.action == Action.REPLACE or strategy == "canary"):
                groups.setdefault(c.fleet, []).append(c)
    grouped = {id(m) for members in groups.values() for m in members}
    for fleet_addr, members in groups.items():
        rid = add(Node(Op.ROLLOUT, by_addr[fleet_addr], group=members))
        for m in members:
            fwd[m.address] = rid

    for c in plan.changes:
        if c.action == Action.NOOP or id(c) in grouped:
            continue
        provider_backed = ResourceKind(c.kind).provider_backed
        if c.action == Action.REFRESH and c.after is None and not c.deposed:
            rem[c.address] = add(Node(Op.FORGET, c))  # refresh found it gone: drop the record
        elif c.action in (Action.CREATE, Action.UPDATE, Action.REFRESH) and not c.deposed:
            op = Op.WRITE
            if provider_backed and c.action is not Action.REFRESH:
                op = Op.CREATE if c.action == Action.CREATE else Op.UPDATE
            fwd[c.address] = add(Node(op, c))
        elif c.action == Action.DELETE:
            nid = add(Node(Op.DELETE if provider_backed else Op.FORGET, c, deposed=c.deposed))
            if not c.deposed:
                rem[c.address] = nid
        elif c.action == Action.REPLACE:
            if c.create_before_destroy:
                fwd[c.address] = add(Node(Op.CREATE, c))
                old[c.address] = add(Node(Op.DELETE, c))
                g.add_edge(fwd[c.address], old[c.address])
            else:
                rem[c.address] = add(Node(Op.DELETE, c))
                fwd[c.address] = add(Node(Op.CREATE, c))
                g.add_edge(rem[c.address], fwd[c.address])

    # address -> dependents, over what the configuration keeps (for transitive dependents)
    users = nx.DiGraph()
    for c in plan.changes:
        if not c.deposed and c.action != Action.DELETE:
            users.add_edges_from((dep, c.address) for dep in c.dependencies)

    def dependents(address: str, kinds: tuple[ResourceKind, ...] | None = None) -> list[str]:
        """Forward nodes of everything that transitively depends on `address`."""
        if address not in users:
            return []
        return [fwd[a] for a in sorted(nx.descendants(users, address))
                if a in fwd and (kinds is None or by_addr[a].kind in kinds)]

    for address, old_id in old.items():
        for nid in dependents(address):
            g.add_edge(nid, old_id)

    for c in plan.changes:
        if c.action == Action.NOOP:
            continue
        me_fwd = fwd.get(c.address) if not c.deposed else None
        if me_fwd:
            for dep in c.dependencies:
                if dep in fwd and fwd[dep] != me_fwd:
                    if by_addr.get(dep) is not None and by_addr[dep].kind == ResourceKind.MODEL and by_addr[dep].action == Action.UPDATE:
                        # a model is a registry entry: record a new version once what serves it is
                        # in place, so a failed or rolled-back rollout leaves the old version recorded
                        g.add_edge(me_fwd, fwd[dep])
                    else:
                        g.add_edge(fwd[dep], me_fwd)
                # a create-before-destroy replacement's old object goes after its dependents are done
                if dep in old:
                    g.add_edge(me_fwd, old[dep])
        # deletions: a dependent goes before what it depends on
        my_delete = [n for n in (rem.get(c.address) if not c.deposed else f"delete:{c.key}",) if n]
        for nid in my_delete:
            for dep in c.dependencies:
                if dep in rem:
                    g.add_edge(nid, rem[dep])
            # removing a replica changes its fleet's endpoints: update the fleet after, or,
            # when routers front the fleet, update the fleet and routers first (the fleet's
            # endpoints leave out replicas being removed) so no request goes to a stopped server
            if c.kind == ResourceKind.REPLICA and c.fleet in fwd and _removes(c):
                routers = dependents(c.fleet, (ResourceKind.ROUTER,))
                for rid in routers:
                    g.add_edge(rid, nid)
                if not routers:
                    g.add_edge(nid, fwd[c.fleet])
    return g


class Executor:
    """Runs an apply graph against a state store and providers."""

    def __init__(self, store, providers: ProviderSet, *, parallelism: int = 10,
                 on_event: Callable[[Event], None] | None = None, retries: int = ATTEMPTS,
                 resolve: Callable[[dict[str, Any], list[str]], dict[str, Any]] | None = None,
                 who: str = "", alert_urls: list[str] | None = None,
                 run_rollout: Callable[..., Any] | None = None):
        self.store = store
        self.providers = providers
        self.parallelism = max(1, parallelism)
        self.on_event = on_event or (lambda e: None)
        self.retries = retries
        self.resolve = resolve or (lambda attrs, unknown: attrs)
        self.who = who
        self.alert_urls = alert_urls or []
        # the rollout feature sits above apply: the workspace hands its runner in
        self.run_rollout = run_rollout
        self._deposed: dict[str, str] = {}
        self._old_attrs: dict[str, dict] = {}
        self._members: dict[str, dict[str, dict]] = {}
        self._leaving: set[str] = set()  # replicas this apply removes (scale down)
        self.still_every = 10.0  # seconds between "still creating" events
        self._events: list[Event] | None = None  # events of the round being committed
        self._call_started: dict[str, float] = {}  # node id -> when its provider call started

    #: nodes begun (intents written) per transaction before their calls are submitted: small
    #: enough that the first calls start while later intents are still being written
    START_CHUNK = 8

    @property
    def ahead(self) -> int:
        """Calls submitted beyond `parallelism`, their intents committed: they wait in the
        pool's queue, so a worker that finishes a call starts the next at once instead of
        waiting for the main thread to record the result and write the next intent."""
        return self.parallelism // 5

    # -- the walk --------------------------------------------------------------
    def run(self, plan: Plan) -> ApplyResult:
        """Walk the apply graph, one state transaction per scheduling round.

        A round commits, together, the results of every call that finished since the
        last round and then the intents of the nodes that start next (among them the
        dependents those results released); only after the commit are the round's
        events emitted and the new calls submitted. So an intent is durable before its
        call starts, and a result before anything that depends on it starts. At most
        `parallelism` calls run at once; `ahead` more may wait for a free worker.
        """
        import heapq

        g = build_apply_graph(plan)
        result = ApplyResult()
        started = time.monotonic()
        self._load_cache()
        self._leaving = {c.address for c in plan.changes if c.kind == ResourceKind.REPLICA and _removes(c) and not c.deposed}
        remaining_preds = {n: g.in_degree(n) for n in g.nodes}
        ready = [n for n, d in remaining_preds.items() if d == 0]
        heapq.heapify(ready)
        running: dict[Future, tuple[str, float]] = {}  # submitted (running or queued): node id, begin time
        completed: queue.SimpleQueue[Future] = queue.SimpleQueue()
        blocked: set[str] = set()
        self._call_started = {}
        limit = self.parallelism + self.ahead

        def finish_ok(node: Node, t0: float) -> None:
            """Release a node's dependents; it counts as done once the round is committed."""
            done_now.append(node)
            self._emit("done", node, elapsed=time.monotonic() - self._call_started.get(node.id, t0))
            for succ in g.successors(node.id):
                remaining_preds[succ] -= 1
                if remaining_preds[succ] == 0 and succ not in blocked:
                    heapq.heappush(ready, succ)

        pool = ThreadPoolExecutor(max_workers=self.parallelism)
        try:
            finished: list[Future] = []
            to_submit: list[tuple[Node, float, Any]] = []  # intents committed, calls not yet submitted
            try:
                while True:
                    jobs: list[tuple[Node, float, Any]] = []
                    done_now: list[Node] = []
                    self._events = []  # emitted once the round is committed
                    with self.store.batch():
                        # 1. results of the calls that finished
                        for fut in finished:
                            nid, t0 = running[fut]
                            node = g.nodes[nid]["node"]
                            exc = fut.exception()
                            if exc is None:
                                try:
                                    self._complete(node, fut.result())
                                    finish_ok(node, t0)
                                    continue
                                except InfraplanError as e:
                                    exc = e
                            self._record_failure(node, exc)
                            self._fail(node, _reason(exc), g, result, blocked,
                                       time.monotonic() - self._call_started.get(nid, t0))
                        # 2. intents of what starts next; a round begins at most START_CHUNK nodes
                        begun = 0
                        while ready and len(running) - len(finished) + len(jobs) < limit and begun < self.START_CHUNK:
                            nid = heapq.heappop(ready)
                            if nid in blocked:
                                continue
                            node = g.nodes[nid]["node"]
                            begun += 1
                            t0 = time.monotonic()
                            try:
                                job = self._begin(node)
                            except InfraplanError as exc:
                                self._emit("start", node)
                                self._fail(node, str(exc), g, result, blocked, time.monotonic() - t0)
                                continue
                            if job is None:  # no provider call: done with this transaction
                                self._emit("start", node)
                                finish_ok(node, t0)
                            else:
                                jobs.append((node, t0, job))
                    to_submit = jobs
                    for node in done_now:
                        result.done.append(node.id)
                        result.count(node)
                    for fut in finished:
                        del running[fut]
                    self._flush_events()  # before any new call can report its start
                    while to_submit:
                        node, t0, job = to_submit[0]
                        fut = pool.submit(self._start_call, node, job)
                        running[fut] = (node.id, t0)
                        to_submit.pop(0)
                        fut.add_done_callback(completed.put)
                    finished = []
                    if ready and len(running) < limit:
                        continue  # more can start: another round at once
                    if not running:
                        break
                    # 3. wait for calls: one queue of finished calls, O(1) per completion
                    try:
                        finished = [completed.get(timeout=self.still_every)]
                    except queue.Empty:
                        now = time.monotonic()
                        for nid, _ in running.values():
                            if nid in self._call_started:
                                self._emit("still", g.nodes[nid]["node"], elapsed=now - self._call_started[nid])
                        continue
                    while True:
                        try:
                            finished.append(completed.get_nowait())
                        except queue.Empty:
                            break
            except KeyboardInterrupt as exc:
                self._stop(exc, g, running, to_submit, result)
        finally:
            # idle workers exit by themselves: wait only for calls left running (after an error);
            # calls abandoned by a second interrupt are not waited for
            pool.shutdown(wait=bool(running) and not result.abandoned, cancel_futures=bool(result.abandoned))
        self._events = None
        done_or_failed = set(result.done) | set(result.failed) | set(result.abandoned)
        result.skipped = sorted(n for n in g.nodes if n not in done_or_failed)
        for nid in result.skipped:
            # after an interrupt, what never ran was stopped, not skipped for a failed dependency
            self._emit("interrupted" if result.interrupted else "skipped", g.nodes[nid]["node"])
        result.elapsed_s = time.monotonic() - started
        return result

    def _stop(self, exc: KeyboardInterrupt, g, running: dict[Future, tuple[str, float]],
              to_submit: list[tuple[Node, float, Any]], result: ApplyResult) -> None:
        """Ctrl-C or SIGTERM: start nothing more, wait for the calls running and record them.

        Says at once what it waits for. Calls begun but not started never start (their
        intents are recorded as failed); running ones are waited for and recorded, so
        nothing is lost (those of an interrupted round are still here: its transaction
        was rolled back). A second interrupt stops the waiting: what finished by then is
        recorded, the rest keep their intents for the next plan to reconcile.
        """
        result.interrupted = True
        result.interrupted_by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        self._events = None
        submitted = {nid for nid, _ in running.values()}
        not_started = [node for node, _, _ in to_submit if node.id not in submitted]
        for fut in list(running):
            if fut.cancel():
                not_started.append(g.nodes[running.pop(fut)[0]]["node"])
        waiting = [g.nodes[nid]["node"] for nid, _ in running.values()]
        self.on_event({"type": "interrupt", "signal": result.interrupted_by,
                       "waiting": [{"op": n.op, "address": n.change.address} for n in waiting]})
        for node in not_started:
            if node.op != Op.ROLLOUT:  # a rollout records its own steps once it runs
                self._record_failure(node, InfraplanError("not started: the apply was interrupted"))

        def collect(fut: Future) -> None:
            nid, t0 = running.pop(fut)
            node = g.nodes[nid]["node"]
            elapsed = time.monotonic() - self._call_started.get(nid, t0)
            try:
                self._complete(node, fut.result())
                result.done.append(nid)
                result.count(node)
                self._emit("done", node, elapsed=elapsed)
            except Exception as err:  # noqa: BLE001 - recorded, reported
                self._record_failure(node, err)
                result.failed[nid] = _reason(err)
                self._emit("failed", node, error=_reason(err), elapsed=elapsed)

        while running:
            try:
                finished, _ = futures_wait(list(running), timeout=self.still_every, return_when=FIRST_COMPLETED)
                if not finished:
                    now = time.monotonic()
                    for nid, t0 in running.values():
                        self._emit("still", g.nodes[nid]["node"], elapsed=now - self._call_started.get(nid, t0))
                for fut in finished:
                    collect(fut)
            except KeyboardInterrupt:  # the second one: stop waiting
                for fut in [f for f in running if f.done()]:
                    collect(fut)
                result.abandoned = sorted(nid for nid, _ in running.values())
                self.on_event({"type": "abandon", "left": [
                    {"op": g.nodes[nid]["node"].op, "address": g.nodes[nid]["node"].change.address}
                    for nid in result.abandoned]})
                return

    def _start_call(self, node: Node, job):
        """On a worker: the call starts now (it may have waited for a free worker)."""
        self._call_started[node.id] = time.monotonic()
        self.on_event(self._event("start", node))
        return self._call(job)

    def _fail(self, node, reason, g, result, blocked, elapsed) -> None:
        result.failed[node.id] = reason
        self._emit("failed", node, error=reason, elapsed=elapsed)
        blocked |= nx.descendants(g, node.id)

    def _event(self, kind: str, node: Node, **extra) -> Event:
        return {"type": kind, "op": node.op, "address": node.change.address,
                "deposed": node.deposed or None, "action": node.change.action, **extra}

    def _emit(self, kind: str, node: Node, **extra) -> None:
        """Emit an event; during a round, once the round is committed."""
        ev = self._event(kind, node, **extra)
        if self._events is not None:
            self._events.append(ev)
        else:
            self.on_event(ev)

    def _flush_events(self) -> None:
        events, self._events = self._events or [], None
        for ev in events:
            self.on_event(ev)

    # -- one node: begin (main thread), call (worker), complete (main thread) --
    def _begin(self, node: Node):
        c = node.change
        s = self.store
        if node.op == Op.WRITE:
            attrs = self.resolve(dict(c.after or {}), c.after_unknown)
            if c.kind == ResourceKind.FLEET:
                attrs.update(self._fleet_endpoints(c.address))
            elif c.kind == ResourceKind.REPLICA:
                self._remember(c.address, attrs)
            s.put(c.address, kind=c.kind, attributes=attrs, provider=c.provider,
                  dependencies=c.dependencies)
            return None
        if node.op == Op.FORGET:
            s.remove(c.address, missing_ok=True)
            if c.kind == ResourceKind.REPLICA:
                self._forget(c.address, c.fleet)
            return None
        provider = self.providers.get(c.provider)
        if node.op == Op.ROLLOUT:
            spec = _rollout_spec((c.after or {}).get("rollout") or {})
            request = dict(store=s, provider=provider, fleet=c.address, spec=spec,
                           changes=list(node.group or []), emit=self.on_event, resolve=self.resolve,
                           who=self.who, alert_urls=list(self.alert_urls), providers=self.providers)
            return (Op.ROLLOUT, request)
        if node.op == Op.CREATE:
            attrs = self.resolve(dict(c.after or {}), c.after_unknown)
            attrs = {k: v for k, v in attrs.items() if k not in provider.computed}
            if c.action == Action.REPLACE and c.create_before_destroy:
                old = s.get(c.address)
                if old is not None:
                    self._deposed[c.address] = s.depose(c.address)
                    self._old_attrs[c.address] = old.attributes
            attrs = provider.prepare_create(c.kind, c.address, attrs)
            s.record_intent(c.address, action=Action.CREATE, kind=c.kind, provider=c.provider,
                            attributes=attrs, dependencies=c.dependencies)
            return (Op.CREATE, provider, c.kind, c.address, attrs)
        if node.op == Op.UPDATE:
            attrs = self.resolve(dict(c.after or {}), c.after_unknown)
            s.record_intent(c.address, action=Action.UPDATE, kind=c.kind, provider=c.provider,
                            attributes=attrs, dependencies=c.dependencies)
            return (Op.UPDATE, provider, c.kind, c.address, dict(c.before or {}), attrs)
        if node.op == Op.DELETE:
            deposed = node.deposed
            if c.action == Action.REPLACE and c.create_before_destroy:
                deposed = self._deposed.get(c.address, "")
                node.deposed = deposed
                if not deposed:
                    return None  # nothing was deposed (the old object was already gone)
            rec = s.get(c.address, deposed=deposed)
            if rec is None:
                return None
            s.record_intent(c.address, action=Action.DELETE, kind=c.kind, provider=c.provider,
                            attributes=rec.attributes, deposed=deposed)
            return (Op.DELETE, provider, c.kind, c.address, dict(rec.attributes))
        raise AssertionError(node.op)

    def _call(self, job):
        if job[0] is Op.ROLLOUT:
            if self.run_rollout is None:
                raise ApplyError(f"{job[1]['fleet']}: this apply cannot run rollouts (no rollout runner)")
            log.debug("rollout %s: begin", job[1]["fleet"])
            out = self.run_rollout(**job[1])
            log.debug("rollout %s: end", job[1]["fleet"])
            return out
        op, provider, kind, address, *args = job
        if op == Op.CREATE:
            fn = provider.create
        elif op == Op.UPDATE:
            fn = provider.update
        elif op == Op.DELETE:
            fn = provider.delete
        else:
            raise AssertionError(op)
        log.debug("%s %s: provider call begins", op, address)
        # the engine owns retries (util.retry): providers raise TransientProviderError once. A
        # ProviderTimeout (a plugin call past its limit, cancelled) is no TransientProviderError:
        # a create that may have happened is not submitted again; the next plan's refresh decides
        try:
            out = call_with_retries(lambda: fn(kind, address, *args), retry_on=TransientProviderError,
                                    attempts=self.retries, what=f"{op} {address}", log=log)
        except BaseException as exc:
            log.debug("%s %s: provider call failed: %s", op, address, _reason(exc))
            raise
        log.debug("%s %s: provider call ends", op, address)
        return out

    def _complete(self, node: Node, value) -> None:
        c = node.change
        s = self.store
        if node.op == Op.ROLLOUT:
            for m in node.group or []:  # the rollout wrote state itself; refresh what we keep in memory
                rec = s.get(m.address)
                if rec is not None:
                    self._remember(m.address, rec.attributes)
            return
        if node.op in (Op.CREATE, Op.UPDATE):
            s.record_result(c.address, attributes=value, dependencies=c.dependencies)
            self._remember(c.address, value)
        elif node.op == Op.DELETE:
            s.remove(c.address, deposed=node.deposed, missing_ok=True)
            if not node.deposed:
                self._forget(c.address, c.fleet)

    def _record_failure(self, node: Node, exc: BaseException) -> None:
        c = node.change
        try:
            self.store.record_failure(c.address, _reason(exc), deposed=node.deposed if node.op == Op.DELETE else "")
        except InfraplanError:
            pass
        if node.op == Op.CREATE and c.action == Action.REPLACE and c.address in self._deposed:
            # the new object did not come up: keep serving with the old one
            self.store.remove(c.address, missing_ok=True)
            self.store.undepose(c.address, self._deposed.pop(c.address))
            self._remember(c.address, self._old_attrs.pop(c.address, {}))

    # -- replica attributes by fleet, kept in memory so fleet entries cost O(replicas) --
    def _load_cache(self) -> None:
        self._members: dict[str, dict[str, dict]] = {}
        for rec in self.store.resources(include_deposed=False):
            if rec.kind == ResourceKind.REPLICA:
                self._remember(rec.address, rec.attributes)

    def _remember(self, address: str, attrs: dict | None) -> None:
        fleet = (attrs or {}).get("fleet")
        if fleet:
            self._members.setdefault(fleet, {})[address] = attrs

    def _forget(self, address: str, fleet: str | None) -> None:
        self._members.get(fleet or "", {}).pop(address, None)

    def _fleet_endpoints(self, fleet_address: str) -> dict[str, Any]:
        reps = sorted((a for addr, a in self._members.get(fleet_address, {}).items() if addr not in self._leaving),
                      key=lambda a: a.get("index", 0))
        # SkyServe slots share one endpoint: list each once
        endpoints = list(dict.fromkeys(a.get("endpoint") for a in reps if a.get("endpoint")))
        return {"endpoints": endpoints, "endpoint": endpoints[0] if endpoints else None}


def _removes(c: Change) -> bool:
    """The change takes the address out of state: a delete, or a refresh that found it gone."""
    return c.action == Action.DELETE or (c.action == Action.REFRESH and c.after is None)


def _rollout_spec(data: dict):
    from infraplan.models.config import RolloutBlock

    return RolloutBlock.model_validate(data)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InfraplanError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"

"""`SkyPilotProvider`: replicas as SkyPilot clusters or as slots of one SkyServe service.

placement `cluster`: each replica ``fleet.NAME[i]`` is its own SkyPilot cluster.

placement `service`: the fleet is one SkyServe service and each replica address is a
*slot* of it (see `service.py`). The service is owned by the fleet's first replica:
``fleet.NAME[0]`` runs ``sky.serve.up`` / ``sky.serve.update`` / ``sky.serve.down``;
``fleet.NAME[i>0]`` only keep the service's replica count at least i+1 (create) or
lower it to i (delete). Every slot records the service's name, endpoint and status,
so ``${fleet.NAME.endpoint}`` is the service's load balancer. A change of model
revision, args, env, resources or service settings is an in-place *update* in the
plan (no replacement): the owner calls ``sky.serve.update`` with the fleet's
``service.update_mode`` (rolling or blue_green) and SkyServe swaps replicas behind
the same endpoint. Only a change of placement, fleet or slot index replaces.
We keep per-replica addresses (rather than one state entry per fleet) so that scale
up/down, targets and the plan read the same as for every other provider.

Plan time uses SkyPilot for real (resources and service spec validated, optimizer,
catalog prices); apply time goes through `SkyClient`, the one narrow door to the SDK.
"""

from __future__ import annotations

import threading
from typing import Any

from infraplan.diagnostics import Diagnostic
from infraplan.errors import ProviderError, ResourceNotFound
from infraplan.providers.contract import (ADDRESS_LABEL, LINEAGE_LABEL, Instance, ListsInstances, Provider,
                                         ProviderContext, ProviderPlan, ReadResult, ResourceKind, RunsServices,
                                         label_value, project_labels)
from infraplan.serving.sglang_args import DEFAULT_VERSION, validate_args

from . import router as smg
from . import service as svc
from .settings import SkyPilotSettings


class SkyPilotProvider(ListsInstances, RunsServices, Provider):
    """Runs SGLang replicas on clouds through SkyPilot.

    Everything it launches carries `project_labels` (the state's lineage and the address) as
    SkyPilot resource labels (GCP labels, AWS tags, Kubernetes pod labels), so its clusters
    are found again by `list_instances` (orphan discovery) and by cloud listings."""

    name = "skypilot"
    requires = ("sky",)
    settings_model = SkyPilotSettings
    # SkyPilot 0.14 pins click<8.2 and cannot share infraplan's environment (sqlite-utils 4 needs
    # click>=8.3.1): `infraplan plugins install skypilot` gives it a virtualenv of its own
    plugin_requirements = ("skypilot==0.14.*", "tenacity>=8.2", "google-re2>=1.1")
    updatable = frozenset({"labels"})
    computed = frozenset({"cluster_name", "endpoint", "cloud_chosen", "region_chosen", "instance_type_chosen",
                          "status", "service_version"}) | smg.ROUTER_COMPUTED

    def __init__(self, context: ProviderContext, client=None):
        super().__init__(context)
        _new_request()
        self._settings: SkyPilotSettings | None = None
        self._client = client
        self._estimates: dict[str, dict[str, Any]] = {}
        self._guard = threading.Lock()
        self._service_locks: dict[str, threading.Lock] = {}
        self._pending: dict[str, set[int]] = {}  # service -> slots prepared, not yet created, this run
        self._targets: dict[str, int] = {}  # service -> replica count last sent, this run
        self._sent: dict[str, dict[str, Any]] = {}  # service -> attributes of the task last sent

    @classmethod
    def warm_key(cls) -> str:
        """SkyPilot keeps its catalogs and config as first read: a warm worker serves while they are unchanged."""
        from .catalogs import fingerprint

        return fingerprint()

    @property
    def settings(self) -> SkyPilotSettings:
        if self._settings is None:
            self._settings = self._parse_settings(SkyPilotSettings)
        return self._settings

    @property
    def client(self):
        if self._client is None:
            from .client import SkyClient

            self._client = SkyClient(timeout_s=self.settings.timeout_s, poll_s=self.settings.poll_s)
        return self._client

    # -- plan time ---------------------------------------------------------
    def plan(self, kind: ResourceKind, prior: dict[str, Any] | None, desired: dict[str, Any]) -> ProviderPlan:
        if kind == ResourceKind.ROUTER:
            return smg.plan(prior, desired, self.settings)
        if svc.is_service(desired, self.settings):
            pplan = self._plan_service(prior, desired)
        else:
            pplan = super().plan(kind, prior, {k: v for k, v in desired.items() if k != "service_name"})
        pplan.diagnostics.extend(self._args_diagnostics(desired))
        if not desired.get("accelerators") and not desired.get("instance_type"):
            pplan.diagnostics.append(Diagnostic(
                "a skypilot fleet without accelerators or instance_type gets SkyPilot's default CPU VM",
                severity="warning"))
        return pplan

    def _args_diagnostics(self, desired: dict[str, Any]) -> list[Diagnostic]:
        """A fleet that pins no SGLang release runs this provider's `sglang_version`; the config was
        checked against the newest release, so check its args against this one when they differ."""
        version = self.settings.sglang_version
        if desired.get("sglang_version") or version == DEFAULT_VERSION:
            return []
        fleet = desired.get("fleet") or "fleet"
        args = {k: v for k, v in (desired.get("args") or {}).items() if not (isinstance(v, str) and "${" in v)}
        return [Diagnostic(f"{message} (this provider's sglang_version is {version}; pin engine.sglang_version "
                           "to choose another)", path=f"{fleet}.engine.args.{name}")
                for name, message in validate_args(args, version)]

    def _plan_service(self, prior: dict[str, Any] | None, desired: dict[str, Any]) -> ProviderPlan:
        """Everything SkyServe can roll out is an in-place update; the slot's identity replaces."""
        attrs = dict(desired, service_name=svc.service_name(desired, self.settings))
        replace: list[str] = []
        if prior is not None:
            for key in sorted(set(prior) | set(attrs)):
                if key in self.computed:
                    if key in prior:
                        attrs.setdefault(key, prior[key])
                elif key in svc.SERVICE_REPLACES | {"service_name"} and prior.get(key) != attrs.get(key):
                    replace.append(key)
        diags = []
        try:
            import sky  # noqa: F401 - validation needs SkyPilot; without it apply fails clearly anyway
        except ImportError:
            pass
        else:
            try:
                svc.make_service_spec(attrs, max(1, int(attrs.get("index") or 0) + 1))
            except ProviderError as exc:
                diags.append(Diagnostic(str(exc), path=None))
        # slot 0 owns the service: its update redeploys the servers behind the same endpoint
        redeploys = prior is not None and not replace and int(attrs.get("index") or 0) == 0 and \
            bool(svc.inputs_changed(prior, attrs))
        return ProviderPlan(attributes=attrs, requires_replace=replace, diagnostics=diags, redeploys=redeploys)

    def estimate(self, kind: ResourceKind, attributes: dict[str, Any]) -> dict[str, Any] | None:
        from .pricing import estimate

        price = smg.estimate if kind == ResourceKind.ROUTER else estimate  # a router: its CPU VM
        key = repr([str(kind), *sorted((k, repr(attributes.get(k))) for k in (
            "accelerators", "cloud", "region", "failover", "use_spot", "spot_fallback", "instance_type",
            "disk_size", "placement", "port"))])
        if key not in self._estimates:
            try:
                self._estimates[key] = price(attributes, self.settings)
            except ProviderError:
                raise
            except ImportError as exc:
                from infraplan.errors import ProviderUnavailable

                from .client import MISSING

                raise ProviderUnavailable(f"{MISSING}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - e.g. a catalog download failing offline
                raise ProviderError(f"SkyPilot could not price the fleet: {type(exc).__name__}: {exc}"[:500]) from exc
        return self._estimates[key]

    # -- apply time (cluster placement) --------------------------------------
    def cluster_name(self, attributes: dict[str, Any]) -> str:
        """A SkyPilot-valid, stable name: prefix, fleet, replica index."""
        import re

        fleet = str(attributes.get("fleet") or "fleet").removeprefix("fleet.")
        base = re.sub(r"[^a-z0-9-]+", "-", f"{self.settings.name_prefix}-{fleet}".lower()).strip("-")
        return f"{base[:40]}-{attributes.get('index', 0)}"

    def create(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> dict[str, Any]:
        from .translate import make_task

        if kind == ResourceKind.ROUTER:
            return smg.create(self.client, self.settings, address, attributes, labels=self.labels(address))
        if svc.is_service(attributes, self.settings):
            return self._create_slot(attributes)
        name = self.cluster_name(attributes)
        task = make_task(name, attributes, self.settings, with_secrets=True, labels=self.labels(address))
        info = self.client.launch(task, name, idle_minutes_to_autostop=self.settings.idle_minutes_to_autostop,
                                  port=self.settings.port)
        out = dict(attributes)
        out.update(cluster_name=name, **{k: v for k, v in info.items() if k in self.computed})
        return out

    def read(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> ReadResult:
        if kind == ResourceKind.ROUTER:
            return smg.read(self.client, self.settings, address, attributes)
        if svc.is_service(attributes, self.settings):
            return self._read_slot(attributes)
        name = attributes.get("cluster_name") or self.cluster_name(attributes)
        rec = self.client.status(name)
        if rec is None:
            return ReadResult(exists=False, detail=f"no SkyPilot cluster {name}")
        return ReadResult(exists=True, attributes={k: v for k, v in rec.items() if k in self.computed},
                          healthy=rec["status"] == "running", detail=rec.get("detail"))

    def update(self, kind: ResourceKind, address: str, prior: dict[str, Any], desired: dict[str, Any]
               ) -> dict[str, Any]:
        if kind == ResourceKind.ROUTER:
            return smg.update(address, prior, desired)
        merged = super().update(kind, address, prior, desired)
        if not svc.is_service(desired, self.settings) or int(desired.get("index") or 0) != 0:
            return merged  # clusters: only labels change in place; service members: state only
        changed = svc.inputs_changed(prior, desired)
        if not changed:
            return merged
        name = merged.get("service_name") or svc.service_name(desired, self.settings)
        mode = svc.service_settings(desired).update_mode
        with self._lock_for(name):
            rec = self.client.serve_status(name)
            if rec is None:
                raise ResourceNotFound(f"SkyServe service {name} does not exist; plan again to create it")
            count = self._targets.get(name) or svc.policy_replicas(rec.get("policy")) or 1
            self.client.serve_update(self._task(name, desired, count), name, mode)
            self._remember(name, desired, count)
        rec = self.client.wait_service(name, min_ready=1)
        merged.update(self._service_attrs(name, rec))
        return merged

    def delete(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> None:
        if kind == ResourceKind.ROUTER:
            return self.client.down(attributes.get("cluster_name") or smg.cluster_name(address, self.settings))
        if svc.is_service(attributes, self.settings):
            return self._delete_slot(attributes)
        self.client.down(attributes.get("cluster_name") or self.cluster_name(attributes))

    # -- labels and orphan discovery (ListsInstances) ---------------------------------
    def labels(self, address: str) -> dict[str, str]:
        """The labels on what this provider launches for `address` (none before a state exists)."""
        return project_labels(self.context.lineage, address)

    def list_instances(self) -> list[Instance]:
        """This state's SkyPilot clusters: those whose labels carry its lineage."""
        if not self.context.lineage:
            return []
        mine = label_value(self.context.lineage)
        provider = self.context.name or self.name
        out = [Instance(instance_id=c["name"], provider=provider, name=c["name"],
                        detail={"status": c["status"], "address": c["labels"].get(ADDRESS_LABEL), "cloud": c["cloud"],
                                "region": c["region"], "instance_type": c["instance_type"]})
               for c in self.client.clusters() if c["labels"].get(LINEAGE_LABEL) == mine]
        out += [Instance(instance_id=s["name"], provider=provider, name=s["name"],
                         detail={"status": s["status"], "address": s["labels"].get(ADDRESS_LABEL),
                                 "kind": "skyserve service", "replicas": s["replicas"]})
                for s in self.client.services() if s["labels"].get(LINEAGE_LABEL) == mine]
        return out

    def delete_instance(self, instance: Instance) -> None:
        """`sky down` of a listed cluster, `sky serve down` of a listed service (already gone is success)."""
        if instance.detail.get("kind") == "skyserve service":
            self.client.serve_down(instance.instance_id)
        else:
            self.client.down(instance.instance_id)

    # -- apply time (service placement) ---------------------------------------
    def prepare_create(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> dict[str, Any]:
        attrs = dict(attributes)
        if kind == ResourceKind.REPLICA and svc.is_service(attrs, self.settings):
            # the creates of one apply are prepared before any runs: the first one up sizes
            # the service for all of them (one `serve up`, not one update per slot)
            name = attrs.setdefault("service_name", svc.service_name(attrs, self.settings))
            with self._guard:
                self._pending.setdefault(name, set()).add(int(attrs.get("index") or 0))
        return attrs

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._service_locks.setdefault(name, threading.Lock())

    def _task(self, name: str, attrs: dict[str, Any], count: int):
        from .service import make_service_task

        fleet = str(attrs.get("fleet") or "fleet")  # one service runs every slot: labelled with its fleet
        return make_service_task(name, attrs, self.settings, count, with_secrets=True,
                                 labels=self.labels(f"{fleet}.canary" if attrs.get("canary") else fleet))

    def _remember(self, name: str, attrs: dict[str, Any], count: int) -> None:
        self._targets[name] = count
        self._sent[name] = dict(attrs)

    def _floor(self, attrs: dict[str, Any], slots: int) -> int:
        fixed = svc.service_settings(attrs).min_replicas
        return slots if fixed is None else fixed

    @staticmethod
    def _service_attrs(name: str, rec: dict[str, Any]) -> dict[str, Any]:
        return {"service_name": name, "endpoint": rec.get("endpoint"), "status": rec["status"],
                "service_version": rec.get("version")}

    def _create_slot(self, attributes: dict[str, Any]) -> dict[str, Any]:
        from .client import service_problem

        attrs = dict(attributes)
        name = attrs.setdefault("service_name", svc.service_name(attrs, self.settings))
        index = int(attrs.get("index") or 0)
        with self._lock_for(name):
            with self._guard:
                pending = self._pending.get(name, set()) | {index}
            rec = self.client.serve_status(name)
            if rec is not None and rec["sky_status"] in ("CONTROLLER_FAILED", "FAILED_CLEANUP", "SHUTTING_DOWN"):
                raise ProviderError(f"SkyServe service {name} {service_problem(rec, 1) or rec['sky_status']}; "
                                    f"tear it down (`sky serve down --purge {name}`) and apply again")
            current = None if rec is None else (self._targets.get(name) or svc.policy_replicas(rec.get("policy")))
            slots = max(max(pending) + 1, current or 0) if svc.service_settings(attrs).min_replicas is None \
                else max(pending) + 1
            count = self._floor(attrs, slots)
            if rec is None:
                self.client.serve_up(self._task(name, attrs, count), name)
                self._remember(name, attrs, count)
            elif current != count:
                latest = self._sent.get(name, attrs)
                self.client.serve_update(self._task(name, latest, count), name,
                                         svc.service_settings(latest).update_mode)
                self._remember(name, latest, count)
            with self._guard:
                self._pending.get(name, set()).discard(index)
        rec = self.client.wait_service(name, min_ready=min(index + 1, count))
        attrs.update(self._service_attrs(name, rec))
        return attrs

    def _read_slot(self, attributes: dict[str, Any]) -> ReadResult:
        from .client import service_problem

        name = svc.name_of(attributes, self.settings)
        rec = self.client.serve_status(name)
        if rec is None:
            return ReadResult(exists=False, detail=f"no SkyServe service {name}")
        index = int(attributes.get("index") or 0)
        count = svc.policy_replicas(rec.get("policy"))
        if svc.service_settings(attributes).min_replicas is None and count is not None and index >= count:
            return ReadResult(exists=False, detail=f"SkyServe service {name} has {count} replica(s): "
                                                   f"slot {index} is not part of it")
        problem = service_problem(rec, 1)
        detail = problem or (f"SkyServe {rec['sky_status']}: {rec['ready_replicas']}/{len(rec['replicas'])} "
                             f"replicas ready")
        return ReadResult(exists=True, attributes=self._service_attrs(name, rec),
                          healthy=rec["status"] == "running" and not problem, detail=detail)

    def _delete_slot(self, attributes: dict[str, Any]) -> None:
        name = svc.name_of(attributes, self.settings)
        index = int(attributes.get("index") or 0)
        with self._lock_for(name):
            if index == 0:
                self.client.serve_down(name)
                self._targets.pop(name, None)
                return
            if svc.service_settings(attributes).min_replicas is not None:
                return  # a fixed floor: slots are membership only
            rec = self.client.serve_status(name)
            if rec is None:
                return
            current = self._targets.get(name) or svc.policy_replicas(rec.get("policy"))
            if current is not None and current <= index:
                return
            latest = self._sent.get(name, attributes)  # an update this run already sent newer attributes
            self.client.serve_update(self._task(name, latest, index), name, svc.service_settings(latest).update_mode)
            self._remember(name, latest, index)

    # -- canary beside the service (the engine's rollout.service) ----------------------
    def service_workers(self, address: str, attributes: dict[str, Any]) -> list[str]:
        if not svc.is_service(attributes, self.settings):
            return []
        name = svc.name_of(attributes, self.settings)
        rec = self.client.serve_status(name)
        if rec is None:
            raise ResourceNotFound(f"SkyServe service {name} does not exist")
        return _ready_endpoints(rec)

    def create_canary(self, address: str, attributes: dict[str, Any], replicas: int) -> dict[str, Any]:
        """`sky.serve.up` of ``<service>-canary`` with the new version and `replicas` fixed replicas."""
        if not svc.is_service(attributes, self.settings):
            raise ProviderError(f"{address}: a canary service needs `placement: service` (this fleet runs clusters)")
        attrs = svc.canary_attributes(attributes, replicas)
        name = svc.canary_name(attrs, self.settings)
        with self._lock_for(name):
            if self.client.serve_status(name) is not None:  # left by an apply that died: start afresh
                self.client.serve_down(name)
            self.client.serve_up(self._task(name, attrs, replicas), name)
        rec = self.client.wait_service(name, min_ready=replicas)
        attrs.update(self._service_attrs(name, rec))
        attrs["workers"] = _ready_endpoints(rec)
        return attrs


def _ready_endpoints(rec: dict[str, Any]) -> list[str]:
    """URLs of a service record's READY replicas."""
    return [r["endpoint"] for r in rec["replicas"] if r["status"] == "running" and r.get("endpoint")]


def _new_request() -> None:
    """Each provider instance is one command (in a warm plugin worker, one session): SkyPilot's
    request-scoped caches (credentials, identities, workspaces) are cleared as its API server
    does per request. Nothing to do before SkyPilot is imported."""
    import sys

    annotations = sys.modules.get("sky.utils.annotations")
    if annotations is not None:
        annotations.clear_request_level_cache()

"""Orphans: instances carrying this project's marks that no state knows.

`list_orphans` asks every provider with the `ListsInstances` capability and every cloud
finder at once, under one timeout, and keeps what no state record names.

Providers that run instances themselves implement `infraplan.providers.contract.ListsInstances`
(the local provider lists its server processes; the SkyPilot provider lists the clusters
whose labels carry this state's lineage, through its plugin when it runs as one). For
clouds, `LibcloudFinder` lists nodes through any Apache Libcloud compute driver (EC2,
GCE, Azure, ...) and keeps those labelled for this state, with the labels the providers
set (`infraplan.providers.contract.project_labels`):

    infraplan-lineage = <state lineage>            (GCP label / AWS tag / Azure tag)
    infraplan-address = <address, label-safe>      (which address the machine was launched for)

A node is one machine of a cluster, not the cluster the state names, so a listed node is
known when its address label is one of the state's addresses.

Libcloud is the optional extra ``infraplan[libcloud]``; it is imported only when
a finder is made. Listing live clouds is opt-in (``infraplan drift --cloud ec2:us-east-1``).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from infraplan.drift.findings import Evidence, Finding, now_iso
from infraplan.errors import InfraplanError, ProviderUnavailable
from infraplan.providers.contract import ADDRESS_LABEL, LINEAGE_LABEL, Instance, ListsInstances, label_value
from infraplan.providers.registry import ProviderSet

PROJECT_TAG = LINEAGE_LABEL
SKYPILOT_CLUSTER_TAG = "skypilot-cluster-name"
LIBCLOUD_MISSING = "cloud listing needs Apache Libcloud: pip install 'infraplan[libcloud]'"

# Machine types with GPUs: EC2 p*/g* families, GCE a2/a3/g2, Azure NC/ND/NV.
_GPU_TYPE = re.compile(r"^(p\d|g\d|gr\d|trn\d|inf\d|a2-|a3-|a4-|g2-|standard_n[cdv])", re.IGNORECASE)
# GCE machine types that take attached GPUs (`guestAccelerators`): the type alone does not say
_GCE_ATTACHABLE = re.compile(r"^n1-", re.IGNORECASE)


def node_tags(node: Any) -> dict[str, str]:
    """A libcloud node's key/value tags (EC2, Azure `tags`; GCE `labels`)."""
    extra = getattr(node, "extra", None) or {}
    tags: dict[str, str] = {}
    for key in ("labels", "tags"):
        value = extra.get(key)
        if isinstance(value, dict):
            tags.update({str(k): str(v) for k, v in value.items()})
    return tags


def machine_type(node: Any) -> str | None:
    extra = getattr(node, "extra", None) or {}
    for value in (extra.get("instance_type"), extra.get("instancetype"), extra.get("machineType"),
                  ((extra.get("properties") or {}).get("hardwareProfile") or {}).get("vmSize"),
                  getattr(getattr(node, "size", None), "name", None), extra.get("size")):
        if value:
            return str(value).rstrip("/").split("/")[-1]
    return None


def has_gpu(node: Any) -> bool | None:
    """True/False when the node's machine type or accelerators say so; None when unknown.

    A GCE n1 machine carries its GPUs as `guestAccelerators` of the instance, which libcloud's
    GCE driver leaves out of ``node.extra`` (`gce_accelerators` reads them); without them an
    n1 machine is unknown, not GPU-less."""
    extra = getattr(node, "extra", None) or {}
    if extra.get("guestAccelerators") or extra.get("gpus"):
        return True
    mtype = machine_type(node)
    if mtype is None:
        return None
    if _GPU_TYPE.match(mtype):
        return True
    if _GCE_ATTACHABLE.match(mtype) and "guestAccelerators" not in extra:
        return None
    return False


def is_gce(node: Any) -> bool:
    extra = getattr(node, "extra", None) or {}
    return "/machineTypes/" in str(extra.get("machineType") or "") and extra.get("zone") is not None


def gce_accelerators(driver: Any, node: Any) -> list[dict]:
    """The GPUs attached to a GCE instance: its `guestAccelerators`, read from the instance
    resource (``GET zones/ZONE/instances/NAME``, the request libcloud's `ex_get_node` makes)."""
    zone = (getattr(node, "extra", None) or {}).get("zone")
    zone_name = getattr(zone, "name", zone)
    raw = driver.connection.request(f"/zones/{zone_name}/instances/{node.name}", method="GET").object
    return list((raw or {}).get("guestAccelerators") or [])


class LibcloudFinder:
    """Lists this project's tagged nodes through one libcloud compute driver."""

    def __init__(self, driver: Any, *, lineage: str | None, gpu_only: bool = True, name: str | None = None):
        self.driver = driver
        self.lineage = lineage
        self.gpu_only = gpu_only
        self.name = name or f"libcloud:{getattr(driver, 'type', None) or type(driver).__name__}"

    def _ours(self, tags: dict[str, str]) -> bool:
        return bool(self.lineage) and tags.get(PROJECT_TAG) == label_value(self.lineage or "")

    def list_instances(self) -> list[Instance]:
        out = []
        for node in self.driver.list_nodes():
            state = str(getattr(node, "state", "")).lower()
            if state in ("terminated", "nodestate.terminated"):
                continue
            tags = node_tags(node)
            if not self._ours(tags):
                continue
            gpu = has_gpu(node)
            if gpu is None and is_gce(node):
                node.extra["guestAccelerators"] = gce_accelerators(self.driver, node)
                gpu = has_gpu(node)
            if self.gpu_only and gpu is False:
                continue
            out.append(Instance(
                instance_id=str(node.id), provider=self.name, name=str(node.name or ""),
                detail={"state": state, "machine_type": machine_type(node), "gpu": gpu,
                        "cluster": tags.get(SKYPILOT_CLUSTER_TAG), "address": tags.get(ADDRESS_LABEL), "ips": list(getattr(node, "public_ips", []) or []),
                        "tags": tags},
            ))
        return out

    def delete_instance(self, instance: Instance) -> None:
        for node in self.driver.list_nodes():
            if str(node.id) == instance.instance_id:
                if not self.driver.destroy_node(node):
                    raise InfraplanError(f"{self.name} refused to destroy {instance.instance_id}")
                return


def make_driver(spec: str, env: dict[str, str] | None = None) -> Any:
    """A libcloud driver from ``KIND[:REGION]``, credentials from the usual environment variables.

    ec2:REGION  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY[, AWS_SESSION_TOKEN]
    gce:ZONE    GOOGLE_APPLICATION_CREDENTIALS (service account JSON), GOOGLE_CLOUD_PROJECT
    azure       AZURE_TENANT_ID, AZURE_SUBSCRIPTION_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET
    dummy       libcloud's dummy driver (no network; for trying the command)
    """
    env = dict(os.environ if env is None else env)
    try:
        from libcloud.compute.providers import Provider, get_driver
    except ImportError as exc:
        raise ProviderUnavailable(LIBCLOUD_MISSING) from exc
    kind, _, where = spec.partition(":")

    def need(*names: str) -> list[str]:
        missing = [n for n in names if not env.get(n)]
        if missing:
            raise InfraplanError(f"--cloud {spec}: set {', '.join(missing)}")
        return [env[n] for n in names]

    if kind == "ec2":
        key, secret = need("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        return get_driver(Provider.EC2)(key, secret, region=where or "us-east-1", token=env.get("AWS_SESSION_TOKEN"))
    if kind == "gce":
        (creds, project) = need("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")
        import json

        email = json.loads(open(creds).read()).get("client_email", "")
        return get_driver(Provider.GCE)(email, creds, project=project, datacenter=where or None)
    if kind == "azure":
        tenant, sub, client, secret = need("AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
        return get_driver(Provider.AZURE_ARM)(tenant, sub, client, secret)
    if kind == "dummy":
        return get_driver(Provider.DUMMY)(0)
    raise InfraplanError(f"--cloud {spec}: unknown cloud {kind!r} (ec2:REGION, gce:ZONE, azure, dummy)")


# -- across providers and finders ---------------------------------------------------------


#: the attributes that name a real object a provider lists (a SkyServe service by its name)
_ID_KEYS = ("instance_id", "cluster_name", "node_id", "service_name")


def known_ids(snapshot) -> set[str]:
    """Every instance id / cluster name recorded in state (deposed and in-flight objects too)."""
    known = set()
    for rec in snapshot.resources:
        a = rec.attributes or {}
        known.update(str(a[k]) for k in _ID_KEYS if a.get(k))
    for rec in snapshot.resources:  # an in-flight create's intended identity
        pend = (rec.pending or {}).get("attributes") or {}
        known.update(str(pend[k]) for k in _ID_KEYS if pend.get(k))
    return known


def list_orphans(snapshot, providers: ProviderSet, provider_keys: set[str], finders: list, timeout: float
                 ) -> tuple[list[tuple[Instance, Any]], int, list[Finding]]:
    """(orphan, the lister that can delete it) pairs, how many instances were listed, and listing errors."""
    known = known_ids(snapshot)
    listers: list[tuple[str, str, Any]] = []  # (name, address, object with list_instances)
    errors: list[Finding] = []

    def error(name: str, address: str, what: str) -> Finding:
        return Finding("error", address=address, provider=name, summary=f"cannot list instances of {name}: {what}",
                       evidence=[Evidence("list_instances", "an answer", what, name, "expected")])

    for key in sorted(provider_keys):
        try:
            provider = providers.get(key)
        except InfraplanError as exc:
            errors.append(error(key, f"provider.{key}", str(exc)))
            continue
        if isinstance(provider, ListsInstances):
            listers.append((key, f"provider.{key}", provider))
    for finder in finders:
        name = getattr(finder, "name", type(finder).__name__)
        listers.append((name, f"cloud.{name}", finder))
    found: list[tuple[Instance, Any]] = []
    if listers:
        pool = ThreadPoolExecutor(max_workers=min(8, len(listers)))
        try:
            futures = {pool.submit(obj.list_instances): (name, addr, obj) for name, addr, obj in listers}
            _, late = wait(futures, timeout=timeout)
            for fut, (name, addr, obj) in futures.items():
                if fut in late:
                    errors.append(error(name, addr, f"no answer within {timeout:g}s"))
                elif fut.exception() is not None:
                    exc = fut.exception()
                    errors.append(error(name, addr, str(exc) if isinstance(exc, InfraplanError) else f"{type(exc).__name__}: {exc}"))
                else:
                    found.extend((inst, obj) for inst in fut.result())
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    addresses = {label_value(r.address) for r in snapshot.resources} | {  # a SkyServe fleet's VMs: its fleet
        label_value(str(r.attributes["fleet"])) for r in snapshot.resources
        if (r.attributes or {}).get("service_name") and r.attributes.get("fleet")}
    finder_ids = {id(f) for f in finders}
    orphans = [(i, o) for i, o in found
               if not {i.instance_id, i.name, i.detail.get("cluster")} & known
               and not (id(o) in finder_ids and i.detail.get("address") in addresses)]
    return orphans, len(found), errors


def orphan_finding(inst: Instance) -> Finding:
    shown = {k: (now_iso(v) if k == "started_at" and isinstance(v, (int, float)) else v) for k, v in inst.detail.items()}
    what = ", ".join(f"{k} {v}" for k, v in shown.items() if v is not None and not isinstance(v, (dict, list)))
    return Finding("orphaned", address=f"{inst.provider}/{inst.instance_id}", provider=inst.provider,
                   instance_id=inst.instance_id,
                   summary=f"{inst.name or inst.instance_id} runs for this project but is in no state",
                   evidence=[Evidence("state record", "one for every instance of this project", "none",
                                     f"{inst.provider} instance listing", "expected")],
                   detail=what or None, resource={"name": inst.name, "endpoint": inst.endpoint, **inst.detail})


def orphan_findings(snapshot, providers, provider_keys, finders, timeout) -> tuple[list[Finding], int, list[Finding]]:
    orphans, listed, errors = list_orphans(snapshot, providers, provider_keys, finders, timeout)
    return [orphan_finding(i) for i, _ in orphans], listed, errors

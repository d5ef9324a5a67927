"""`SkyClient`: the one narrow door to SkyPilot's SDK.

Every SDK call returns a request id; it is resolved here with `sky.get` (or
`sky.stream_and_get` for launches, which stream provisioning logs), under a
timeout, and never retried here: transient errors are raised once and the engine
calls again (`infraplan.util.retry`, one owner, one bound). SkyPilot's exceptions become
infraplan's: no capacity (with the fail-over history), no cloud access, cluster
not found. Tests replace the module-level `sdk()` with a fake that returns
SkyPilot's real types.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any


from infraplan.errors import ProviderError, ResourceNotFound, TransientProviderError


class NoCapacity(ProviderError):
    """No candidate had capacity; `failover_history` lists what was tried."""

    def __init__(self, message: str, failover_history: list[str]):
        super().__init__(message)
        self.failover_history = failover_history


class NoCloudAccess(ProviderError):
    """No cloud is enabled (credentials missing): run `sky check`."""


MISSING = ("SkyPilot is not installed in this environment: run `infraplan plugins install skypilot` "
           "(SkyPilot 0.14 pins click<8.2, so it gets a virtualenv of its own)")


def sdk():
    """The SDK module (`sky`); a seam for tests."""
    try:
        import sky
    except ImportError as exc:
        from infraplan.errors import ProviderUnavailable

        raise ProviderUnavailable(f"{MISSING}: {exc}") from exc
    return sky


# SkyPilot ClusterStatus -> infraplan status
CLUSTER_STATUS = {"PENDING": "creating", "INIT": "creating", "UP": "running", "AUTOSTOPPING": "stopping",
                  "STOPPED": "stopped"}
# SkyServe ServiceStatus / ReplicaStatus -> infraplan status
SERVICE_STATUS = {"CONTROLLER_INIT": "creating", "REPLICA_INIT": "creating", "CONTROLLER_FAILED": "failed",
                  "READY": "running", "SHUTTING_DOWN": "deleting", "FAILED": "failed",
                  "FAILED_CLEANUP": "failed", "NO_REPLICA": "degraded"}
REPLICA_STATUS = {"PENDING": "creating", "PROVISIONING": "creating", "STARTING": "creating", "READY": "running",
                  "NOT_READY": "degraded", "SHUTTING_DOWN": "deleting", "FAILED": "failed",
                  "FAILED_INITIAL_DELAY": "failed", "FAILED_PROBING": "failed", "FAILED_PROVISION": "failed",
                  "FAILED_CLEANUP": "failed", "PREEMPTED": "failed", "UNKNOWN": "unknown"}


def map_status(table: dict[str, str], status: Any) -> str:
    """An enum (or its name) through `table`; unknown names map to "unknown"."""
    name = getattr(status, "value", status)
    return table.get(str(name), "unknown")


def translate_error(exc: BaseException) -> BaseException:
    """SkyPilot's exception -> infraplan's (unchanged when not a SkyPilot error)."""
    ex = sdk().exceptions
    if isinstance(exc, ex.ResourcesUnavailableError):
        history = [f"{type(e).__name__}: {e}" for e in exc.failover_history]
        msg = f"no capacity: {exc}"
        if history:
            msg += " (tried: " + "; ".join(history) + ")"
        return NoCapacity(msg, history)
    if isinstance(exc, ex.NoCloudAccessError):
        return NoCloudAccess(f"no cloud access: {exc} (run `sky check`)")
    if isinstance(exc, ex.ClusterDoesNotExist):
        return ResourceNotFound(str(exc))
    if isinstance(exc, ex.ClusterNotUpError):  # SkyServe: no controller, so no services
        return ResourceNotFound(f"SkyServe controller is not up: {exc}")
    if isinstance(exc, (ex.ApiServerConnectionError, ex.ServerTemporarilyUnavailableError, ex.NetworkError,
                        ConnectionError, TimeoutError)):
        return TransientProviderError(f"SkyPilot: {type(exc).__name__}: {exc}")
    return exc


def _cancel(sky: Any, request_id: Any) -> None:
    """Ask the API server to cancel a request that timed out (best effort)."""
    try:
        sky.api_cancel(request_id)
    except Exception:  # noqa: BLE001 - an old server or a request already done
        pass


class SkyClient:
    """Launch, status and down of clusters; up, update, status and down of services."""

    def __init__(self, *, timeout_s: float = 3600.0, poll_s: float = 15.0):
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    def _call(self, fn_name: str, *args, stream: bool = False, request_id: Any = None, **kwargs) -> Any:
        """One SkyPilot request, resolved within `timeout_s`; errors translated, never retried here
        (the engine owns retries: `infraplan.util.retry`). With `request_id`, nothing is
        submitted: that request (still running on the API server) is waited for."""
        def attempt():
            sky = sdk()
            try:
                if request_id is None:
                    rid = getattr(sky, fn_name)(*args, **kwargs) if "." not in fn_name else \
                        getattr(getattr(sky, fn_name.split(".")[0]), fn_name.split(".")[1])(*args, **kwargs)
                else:
                    rid = request_id
                resolve = sky.stream_and_get if stream else sky.get
                # not `with`: leaving a ThreadPoolExecutor block waits for the call, so a
                # timeout would only fire after the call's full length
                pool = concurrent.futures.ThreadPoolExecutor(1)
                fut = pool.submit(resolve, rid)
                try:
                    return fut.result(timeout=self.timeout_s)
                except concurrent.futures.TimeoutError:
                    _cancel(sky, rid)
                    # not transient: submitting again while the first request may still run
                    # could make a second cluster for one intent
                    raise ProviderError(
                        f"SkyPilot {fn_name} did not finish in {self.timeout_s:g}s (request {rid}, "
                        "cancelled); run `sky api status` to see what became of it") from None
                finally:
                    pool.shutdown(wait=False, cancel_futures=True)
            except ProviderError:  # ours already (a timeout), not SkyPilot's
                raise
            except Exception as exc:  # noqa: BLE001 - every SkyPilot error is translated
                new = translate_error(exc)
                if new is exc:  # any other failure of a request is still the provider's
                    raise ProviderError(f"SkyPilot {fn_name} failed: {type(exc).__name__}: {exc}"[:2000]) from exc
                raise new from exc

        return attempt()

    # -- clusters -------------------------------------------------------------
    def in_flight(self, cluster_name: str, request_name: str = "sky.launch") -> str | None:
        """The id of a `request_name` request for `cluster_name` the API server still runs
        (one an earlier, timed-out or killed apply submitted), else None."""
        sky = sdk()
        try:
            requests = sky.api_status(cluster_name=cluster_name)  # pending and running ones only
        except Exception as exc:  # noqa: BLE001 - every SkyPilot error is translated
            raise translate_error(exc) from exc
        for r in requests or []:
            if r.cluster_name == cluster_name and r.name in (request_name, request_name.removeprefix("sky.")) and \
                    str(r.status).upper().rsplit(".", 1)[-1] in ("PENDING", "RUNNING"):
                return r.request_id
        return None

    def launch(self, task, cluster_name: str, *, idle_minutes_to_autostop: int | None = None,
               port: int | None = None) -> dict[str, Any]:
        """Launch (or reuse) `cluster_name`; return what it became (status, where, endpoint).

        A launch of the same cluster still running on the API server (after a timeout or a
        killed apply) is waited for, not submitted again: one intent, one cluster."""
        running = self.in_flight(cluster_name)
        self._call("launch", task, cluster_name=cluster_name, idle_minutes_to_autostop=idle_minutes_to_autostop,
                   stream=True, request_id=running)
        rec = self.status(cluster_name) or {}
        if port is not None:
            urls = self._call("endpoints", cluster_name, port)
            url = (urls or {}).get(port) or (urls or {}).get(str(port))
            if url:
                rec["endpoint"] = url if "://" in url else f"http://{url}"
        return rec

    def status(self, cluster_name: str, *, refresh: bool = True) -> dict[str, Any] | None:
        """One cluster's status (refreshed from the cloud), or None when it does not exist."""
        sky = sdk()
        mode = sky.StatusRefreshMode.FORCE if refresh else sky.StatusRefreshMode.NONE
        records = self._call("status", [cluster_name], refresh=mode)
        for r in records or []:
            if r["name"] != cluster_name:
                continue
            handle = r["handle"]
            res = getattr(handle, "launched_resources", None)
            return {
                "status": map_status(CLUSTER_STATUS, r["status"]),
                "cloud_chosen": str(res.cloud).lower() if res is not None and res.cloud else None,
                "region_chosen": getattr(res, "region", None),
                "instance_type_chosen": getattr(res, "instance_type", None),
                "detail": r.get("init_status_reason") if hasattr(r, "get") else None,
            }
        return None

    def clusters(self) -> list[dict[str, Any]]:
        """Every cluster of this SkyPilot user (cached status, no cloud refresh), with the labels
        its resources were launched with (SkyPilot keeps them on the handle's `launched_resources`)."""
        records = self._call("status", None, refresh=sdk().StatusRefreshMode.NONE)
        out = []
        for r in records or []:
            res = getattr(r["handle"], "launched_resources", None)
            out.append({"name": r["name"], "status": map_status(CLUSTER_STATUS, r["status"]),
                        "labels": dict((res.labels if res is not None else None) or {}),
                        "cloud": str(res.cloud).lower() if res is not None and res.cloud else None,
                        "region": getattr(res, "region", None),
                        "instance_type": getattr(res, "instance_type", None)})
        return out

    def down(self, cluster_name: str) -> None:
        """Tear down; a cluster already gone is success."""
        try:
            self._call("down", cluster_name)
        except ResourceNotFound:
            return

    # -- services (SkyServe) ----------------------------------------------------
    def serve_up(self, task, service_name: str) -> str | None:
        """`sky.serve.up`; returns the endpoint SkyServe reports (may be None until the LB is up)."""
        result = self._call("serve.up", task, service_name, stream=True)
        endpoint = result[1] if isinstance(result, (tuple, list)) and len(result) > 1 else None
        return _url(endpoint)

    def serve_update(self, task, service_name: str, mode: str) -> None:
        """`sky.serve.update` in `mode` (``rolling`` or ``blue_green``)."""
        self._call("serve.update", task, service_name, mode=sdk().serve.UpdateMode(mode))

    def serve_status(self, service_name: str) -> dict[str, Any] | None:
        """One service, mapped; None when it (or the SkyServe controller) does not exist."""
        try:
            records = self._call("serve.status", [service_name])
        except ResourceNotFound:
            return None
        for r in records or []:
            if r["name"] != service_name:
                continue
            replicas = [{"replica_id": ri.get("replica_id"), "version": ri.get("version"),
                         "endpoint": _url(ri.get("endpoint")),
                         "status": map_status(REPLICA_STATUS, ri.get("status")),
                         "sky_status": str(getattr(ri.get("status"), "value", ri.get("status")))}
                        for ri in r.get("replica_info") or []]
            return {
                "status": map_status(SERVICE_STATUS, r["status"]),
                "sky_status": str(getattr(r["status"], "value", r["status"])),
                "endpoint": _url(r.get("endpoint")),
                "policy": r.get("policy"),
                "version": max(r.get("active_versions") or [0]),
                "replicas": replicas,
                "ready_replicas": sum(1 for x in replicas if x["status"] == "running"),
            }
        return None

    def services(self) -> list[dict[str, Any]]:
        """Every SkyServe service of this SkyPilot user, with the labels its replicas were launched
        with (a service record has none of its own; each replica's handle keeps its resources')."""
        try:
            records = self._call("serve.status", None)
        except ResourceNotFound:  # no controller: no services
            return []
        out = []
        for r in records or []:
            labels: dict[str, str] = {}
            for ri in r.get("replica_info") or []:
                res = getattr(ri.get("handle"), "launched_resources", None)
                if res is not None and res.labels:
                    labels = dict(res.labels)
                    break
            out.append({"name": r["name"], "status": map_status(SERVICE_STATUS, r["status"]), "labels": labels,
                        "replicas": len(r.get("replica_info") or [])})
        return out

    def serve_down(self, service_name: str) -> None:
        """Tear the service down; a service already gone is success."""
        if self.serve_status(service_name) is None:
            return
        try:
            self._call("serve.down", service_name)
        except ResourceNotFound:
            return

    def wait_service(self, service_name: str, *, min_ready: int = 1, timeout_s: float | None = None,
                     no_replica_polls: int = 3) -> dict[str, Any]:
        """Poll `serve.status` until `min_ready` replicas are READY; a failed service is a ProviderError.

        NO_REPLICA counts as failed once seen on `no_replica_polls` polls in a row (a service
        that was just brought up may have registered no replica yet).
        """
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        empty = 0
        while True:
            rec = self.serve_status(service_name)
            if rec is None:
                raise ResourceNotFound(f"SkyServe service {service_name} does not exist")
            empty = empty + 1 if rec["sky_status"] == "NO_REPLICA" else 0
            problem = service_problem(rec, min_ready) if rec["sky_status"] != "NO_REPLICA" or \
                empty >= no_replica_polls else None
            if problem:
                raise ProviderError(f"SkyServe service {service_name} {problem}")
            if min_ready <= 0 or (rec["status"] == "running" and rec["ready_replicas"] >= min_ready):
                return rec
            if time.monotonic() >= deadline:  # not transient: calling again would wait as long once more
                raise ProviderError(
                    f"SkyServe service {service_name} not ready after {self.timeout_s:g}s "
                    f"(status {rec['sky_status']}, {rec['ready_replicas']}/{min_ready} replicas ready)")
            time.sleep(self.poll_s)


def service_problem(rec: dict[str, Any], min_ready: int = 1) -> str | None:
    """Why a service record is failed (FAILED*, CONTROLLER_FAILED, NO_REPLICA with replicas wanted), or None."""
    failed = rec["sky_status"] in ("FAILED", "FAILED_CLEANUP", "CONTROLLER_FAILED") or (
        rec["sky_status"] == "NO_REPLICA" and min_ready > 0)
    if not failed:
        return None
    reps = ", ".join(f"replica {r['replica_id']} v{r['version']} {r['sky_status']}" for r in rec["replicas"])
    return f"failed: {rec['sky_status']}" + (f" ({reps})" if reps else " (no replicas)") + \
        "; see `sky serve logs` for the replicas' output"


def _url(endpoint: str | None) -> str | None:
    if not endpoint:
        return None
    return endpoint if "://" in endpoint else f"http://{endpoint}"

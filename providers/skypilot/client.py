"""`SkyClient`: the one narrow door to SkyPilot's SDK.

Every SDK call returns a request id; it is resolved here with `sky.get` (or
`sky.stream_and_get` for launches, which stream provisioning logs), under a
timeout, with retries on transient errors. SkyPilot's exceptions become
infraplan's: no capacity (with the fail-over history), no cloud access, cluster
not found. Tests replace the module-level `sdk()` with a fake that returns
SkyPilot's real types.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from infraplan.errors import ProviderError, ResourceNotFound, TransientProviderError


class NoCapacity(ProviderError):
    """No candidate had capacity; `failover_history` lists what was tried."""

    def __init__(self, message: str, failover_history: list[str]):
        super().__init__(message)
        self.failover_history = failover_history


class NoCloudAccess(ProviderError):
    """No cloud is enabled (credentials missing): run `sky check`."""


def sdk():
    """The SDK module (`sky`); a seam for tests."""
    import sky

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
    if isinstance(exc, (ex.ApiServerConnectionError, ex.ServerTemporarilyUnavailableError, ex.NetworkError,
                        ConnectionError, TimeoutError)):
        return TransientProviderError(f"SkyPilot: {type(exc).__name__}: {exc}")
    return exc


class SkyClient:
    """Launch, status and down of clusters; up, update, status and down of services."""

    def __init__(self, *, timeout_s: float = 3600.0, retries: int = 3, wait_s: float = 2.0):
        self.timeout_s = timeout_s
        self.retries = retries
        self.wait_s = wait_s

    def _call(self, fn_name: str, *args, stream: bool = False, **kwargs) -> Any:
        @retry(retry=retry_if_exception_type(TransientProviderError), stop=stop_after_attempt(self.retries),
               wait=wait_exponential(multiplier=self.wait_s, max=30), reraise=True)
        def attempt():
            sky = sdk()
            try:
                request_id = getattr(sky, fn_name)(*args, **kwargs) if "." not in fn_name else \
                    getattr(getattr(sky, fn_name.split(".")[0]), fn_name.split(".")[1])(*args, **kwargs)
                resolve = sky.stream_and_get if stream else sky.get
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    fut = pool.submit(resolve, request_id)
                    try:
                        return fut.result(timeout=self.timeout_s)
                    except concurrent.futures.TimeoutError:
                        raise TransientProviderError(
                            f"SkyPilot {fn_name} did not finish in {self.timeout_s:g}s (request {request_id})") from None
            except TransientProviderError:
                raise
            except Exception as exc:  # noqa: BLE001 - every SkyPilot error is translated
                new = translate_error(exc)
                if new is exc:
                    raise
                raise new from exc

        return attempt()

    # -- clusters -------------------------------------------------------------
    def launch(self, task, cluster_name: str, *, idle_minutes_to_autostop: int | None = None,
               port: int | None = None) -> dict[str, Any]:
        """Launch (or reuse) `cluster_name`; return what it became (status, where, endpoint)."""
        self._call("launch", task, cluster_name=cluster_name, idle_minutes_to_autostop=idle_minutes_to_autostop,
                   stream=True)
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

    def down(self, cluster_name: str) -> None:
        """Tear down; a cluster already gone is success."""
        try:
            self._call("down", cluster_name)
        except ResourceNotFound:
            return

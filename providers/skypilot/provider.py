"""`SkyPilotProvider`: each replica is a SkyPilot cluster (placement `cluster`).

Plan time uses SkyPilot for real (resources validated, optimizer, catalog prices);
apply time goes through `SkyClient`, the one narrow door to the SDK.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from infraplan.diagnostics import Diagnostic
from infraplan.errors import ProviderError
from infraplan.provider import Provider, ProviderContext, ProviderPlan, ReadResult

from .settings import SkyPilotSettings


class SkyPilotProvider(Provider):
    """Runs SGLang replicas on clouds through SkyPilot."""

    name = "skypilot"
    updatable = frozenset({"labels"})
    computed = frozenset({"cluster_name", "endpoint", "cloud_chosen", "region_chosen", "instance_type_chosen",
                          "status"})

    def __init__(self, context: ProviderContext, client=None):
        super().__init__(context)
        self._settings: SkyPilotSettings | None = None
        self._client = client
        self._estimates: dict[str, dict[str, Any]] = {}

    @property
    def settings(self) -> SkyPilotSettings:
        if self._settings is None:
            try:
                self._settings = SkyPilotSettings.model_validate(self.context.settings or {})
            except ValidationError as exc:
                raise ProviderError(f"invalid skypilot provider settings: {exc}") from exc
        return self._settings

    @property
    def client(self):
        if self._client is None:
            from .client import SkyClient

            self._client = SkyClient(timeout_s=self.settings.timeout_s, retries=self.settings.retries)
        return self._client

    # -- plan time ---------------------------------------------------------
    def validate_settings(self) -> list[Diagnostic]:
        try:
            self.settings
        except ProviderError as exc:
            return [Diagnostic(str(exc))]
        return []

    def plan(self, prior: dict[str, Any] | None, desired: dict[str, Any]) -> ProviderPlan:
        pplan = super().plan(prior, desired)
        if not desired.get("accelerators") and not desired.get("instance_type"):
            pplan.diagnostics.append(Diagnostic(
                "a skypilot fleet without accelerators or instance_type gets SkyPilot's default CPU VM",
                severity="warning"))
        if (desired.get("placement") or self.settings.placement) == "service":
            pplan.create_before_destroy_ok = True
        return pplan

    def estimate(self, attributes: dict[str, Any]) -> dict[str, Any] | None:
        from .pricing import estimate

        key = repr(sorted((k, repr(attributes.get(k))) for k in (
            "accelerators", "cloud", "region", "failover", "use_spot", "spot_fallback", "instance_type",
            "disk_size", "placement")))
        if key not in self._estimates:
            try:
                self._estimates[key] = estimate(attributes, self.settings)
            except ProviderError:
                raise
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

    def create(self, address: str, attributes: dict[str, Any]) -> dict[str, Any]:
        from .translate import make_task

        if (attributes.get("placement") or self.settings.placement) == "service":
            raise ProviderError("placement `service` is not implemented yet; use `cluster`")
        name = self.cluster_name(attributes)
        task = make_task(name, attributes, self.settings, with_secrets=True)
        info = self.client.launch(task, name, idle_minutes_to_autostop=self.settings.idle_minutes_to_autostop,
                                  port=self.settings.port)
        out = dict(attributes)
        out.update(cluster_name=name, **{k: v for k, v in info.items() if k in self.computed})
        return out

    def read(self, address: str, attributes: dict[str, Any]) -> ReadResult:
        name = attributes.get("cluster_name") or self.cluster_name(attributes)
        rec = self.client.status(name)
        if rec is None:
            return ReadResult(exists=False, detail=f"no SkyPilot cluster {name}")
        return ReadResult(exists=True, attributes={k: v for k, v in rec.items() if k in self.computed},
                          healthy=rec["status"] == "running", detail=rec.get("detail"))

    def delete(self, address: str, attributes: dict[str, Any]) -> None:
        self.client.down(attributes.get("cluster_name") or self.cluster_name(attributes))

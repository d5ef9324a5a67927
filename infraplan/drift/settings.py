"""Drift settings: alert targets, idle windows, probe timeouts and concurrency."""

from __future__ import annotations

from pydantic import Field

from infraplan.models.base import StrictModel
from infraplan.models.types import parse_duration


class DriftSettings(StrictModel):
    """Drift and alert settings (a `drift:` config block, or command-line flags)."""

    alerts: list[str] = Field(default_factory=list, description="Apprise URLs to alert when drift appears or clears.")
    alert_min_severity: dict[str, str] = Field(
        default_factory=dict, description="URL -> least severity (info, warning, error) it is alerted about; else all.")
    alert_names: dict[str, str] = Field(default_factory=dict, description="URL -> the alert block that set it, for output.")
    idle_after_s: float | None = Field(None, gt=0, description="Report replicas with no requests for this long as idle "
                                       "(every fleet; overrides `fleet_idle_after_s`).")
    fleet_idle_after_s: dict[str, float] = Field(
        default_factory=dict, description="Fleet address -> idle window in seconds (each fleet's `idle_after`).")
    probe_timeout_s: float = Field(2.0, gt=0, description="Timeout of one probe request.")
    retries: int = Field(2, ge=1, description="Tries of a failing health probe before it counts.")
    deadline_s: float = Field(15.0, gt=0, description="Most time spent on one replica.")
    parallelism: int = Field(16, ge=1, le=1000, description="Replicas checked at once (local servers: more threads only fight over the GIL).")
    health_generate: bool = Field(True, description="Also probe /health_generate (a one-token generation).")
    orphans: bool = Field(True, description="List instances to find orphans.")


def settings_from_config(config) -> DriftSettings:
    """Settings from the loaded config: its `alert` blocks for ``drift`` and its fleets' `idle_after`."""
    s = DriftSettings()
    urls, severity, names = list(s.alerts), dict(s.alert_min_severity), dict(s.alert_names)
    for name, block in config.alerts.items():
        if "drift" not in block.events:
            continue
        if block.url not in urls:
            urls.append(block.url)
        names.setdefault(block.url, name)
        if block.min_severity is not None:
            severity[block.url] = block.min_severity
    windows = dict(s.fleet_idle_after_s)
    for address, rc in config.fleets.items():
        if rc.block.idle_after:
            windows[address] = parse_duration(rc.block.idle_after)
    return s.model_copy(update={"alerts": urls, "alert_min_severity": severity, "alert_names": names,
                                "fleet_idle_after_s": windows})


def idle_window(settings: DriftSettings, fleet: str | None) -> float | None:
    """The idle window of a replica of `fleet`: --idle-after if given, else the fleet's `idle_after`."""
    return settings.idle_after_s or settings.fleet_idle_after_s.get(fleet or "")


def watches_idle(settings: DriftSettings) -> bool:
    """Whether any replica has an idle window."""
    return bool(settings.idle_after_s or settings.fleet_idle_after_s)

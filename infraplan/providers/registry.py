"""The provider registry: entry points -> provider classes, and the instances of one run.

A provider class runs here or, when its SDK cannot be imported here, in a plugin
interpreter of its own (`infraplan.providers.plugin`); the engine sees a `Provider`
with the same capabilities either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infraplan.diagnostics import short_repr
from infraplan.errors import ProviderUnavailable
from infraplan.providers.contract import Provider, ProviderContext

ENTRY_POINT_GROUP = "infraplan.providers"


def available_providers() -> dict[str, str]:
    """Provider names -> entry-point target, without importing them."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


_EXTRAS = {"sglang": "sglang", "libcloud": "libcloud"}


def load_provider_class(name: str) -> type[Provider]:
    """Import a provider by entry-point name; a missing extra is a clear error."""
    from importlib.metadata import entry_points

    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(sorted(available_providers())) or "none"
        raise ProviderUnavailable(f"unknown provider {short_repr(name)} (installed: {known})")
    try:
        cls = matches[0].load()
    except ImportError as exc:
        extra = _EXTRAS.get(name, name)
        raise ProviderUnavailable(
            f"provider {short_repr(name)} is unavailable: pip install 'infraplan[{extra}]' ({exc})"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ProviderUnavailable(f"entry point {short_repr(name)} is not an infraplan Provider")
    return cls


class ProviderSet:
    """Provider instances for one run, created on first use, keyed by provider block name."""

    def __init__(self, blocks: dict[str, Any], *, project_dir: Path, state_path: Path, lineage: str = ""):
        self.blocks = blocks
        self.lineage = lineage
        self.project_dir = project_dir
        self.state_path = state_path
        self._instances: dict[str, Provider] = {}

    def type_of(self, key: str) -> str:
        block = self.blocks.get(key)
        return (getattr(block, "type", None) or key) if block is not None else key

    def get(self, key: str) -> Provider:
        if key not in self._instances:
            cls = load_provider_class(self.type_of(key))
            block = self.blocks.get(key)
            runtime = self.state_path.parent / ".infraplan" / self.state_path.stem
            ctx = ProviderContext(
                project_dir=self.project_dir,
                state_path=self.state_path,
                runtime_dir=runtime,
                settings=dict(getattr(block, "settings", {}) or {}),
                name=key,
                lineage=self.lineage,
            )
            type_name = self.type_of(key)
            from infraplan.providers.plugin.host import RemoteProvider, runs_in_plugin

            if runs_in_plugin(cls, type_name, getattr(block, "isolation", "auto")):
                self._instances[key] = RemoteProvider.connect(cls, ctx, type_name,
                                                              getattr(block, "plugin_timeouts", None))
            else:
                self._instances[key] = cls(ctx)
        return self._instances[key]

    def close(self) -> None:
        for p in self._instances.values():
            p.close()

"""The provider checks that need no provider running: names known to the registry and
block settings against each provider's settings model.

`infraplan validate` runs them after the config loads, and `plan` runs them first, so a
config that validates never fails in `plan` on a provider name or setting.
"""

from __future__ import annotations

from infraplan.diagnostics import Diagnostic, Diagnostics, did_you_mean, short_repr
from infraplan.errors import ProviderUnavailable
from infraplan.providers.registry import available_providers, load_provider_class


def check_providers(config) -> list[Diagnostic]:
    """Every problem with the providers `config` names, each at its place in the config."""
    installed = sorted(available_providers())
    diags = Diagnostics()
    blocks = config.providers

    def check_type(type_name: str, path: tuple, choices: list[str]) -> bool:
        if type_name in installed:
            return True
        diags.append(Diagnostic(
            f"unknown provider {short_repr(type_name)}{did_you_mean(type_name, choices)} "
            f"(installed: {', '.join(installed) or 'none'})",
            location=config.location_of(path), path=".".join(map(str, path))))
        return False

    for rc in [*config.fleets.values(), *config.routers.values()]:
        if rc.block.provider not in blocks:  # a provider used by name, with no block
            check_type(rc.block.provider, (rc.kind, rc.name, "provider"), installed + sorted(blocks))
    for key, block in blocks.items():
        path = ("provider", key, "type") if block.type else ("provider", key)
        if not check_type(block.type or key, path, installed):
            continue
        try:
            cls = load_provider_class(block.type or key)
        except ProviderUnavailable as exc:
            diags.append(Diagnostic(str(exc), location=config.location_of(path), path=".".join(path)))
            continue
        for d in cls.check_settings(key, dict(block.settings or {})):
            if d.location is None and d.path:  # an unknown setting is shown at its key, as the loader does
                d.location = config.location_of(d.path, key=d.extra.get("error") == "extra_forbidden")
            diags.append(d)
    return list(diags)

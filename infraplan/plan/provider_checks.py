"""The provider checks that need no provider running: names known to the registry and
block settings against each provider's settings model.

`infraplan validate` runs them after the config loads, and `plan` runs them first, so a
config that validates never fails in `plan` on a provider name or setting.
"""

from __future__ import annotations

from infraplan.diagnostics import Diagnostic, Diagnostics, did_you_mean, short_repr
from infraplan.errors import ProviderUnavailable
from infraplan.providers import registry


def check_providers(config) -> list[Diagnostic]:
    """Every problem with the providers `config` names, each at its place in the config."""
    installed = sorted(registry.available_providers())
    diags = Diagnostics()
    blocks = config.providers
    loaded: dict[str, tuple[type | None, str]] = {}  # type name -> (class, or None and the problem)

    def load(type_name: str, path: tuple, choices: list[str]) -> type | None:
        """The provider class, or None with a located diagnostic for an unknown or unloadable one."""
        if type_name not in loaded:
            try:
                loaded[type_name] = (registry.load_provider_class(type_name), "")
            except ProviderUnavailable as exc:
                loaded[type_name] = (None, str(exc))
        cls, problem = loaded[type_name]
        if cls is None:
            if type_name not in installed:
                problem = (f"unknown provider {short_repr(type_name)}{did_you_mean(type_name, choices)} "
                           f"(installed: {', '.join(installed) or 'none'})")
            diags.append(Diagnostic(problem, location=config.location_of(path), path=".".join(map(str, path))))
        return cls

    for rc in [*config.fleets.values(), *config.routers.values()]:
        if rc.block.provider not in blocks:  # a provider used by name, with no block
            load(rc.block.provider, (rc.kind, rc.name, "provider"), installed + sorted(blocks))
    for key, block in blocks.items():
        path = ("provider", key, "type") if block.type else ("provider", key)
        cls = load(block.type or key, path, installed)
        if cls is None:
            continue
        for d in cls.check_settings(key, dict(block.settings or {})):
            if d.location is None and d.path:  # an unknown setting is shown at its key, as the loader does
                d.location = config.location_of(d.path, key=d.extra.get("error") == "extra_forbidden")
            diags.append(d)
    return list(diags)

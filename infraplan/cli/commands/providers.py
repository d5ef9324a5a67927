"""`infraplan providers`: installed providers, and why one is unavailable."""

from __future__ import annotations

import click

from infraplan.cli.common import handle_errors
from infraplan.cli.options import color_option, emit_json, json_option


@click.command("providers")
@json_option("A list of {name, available, detail}.")
@color_option
@handle_errors
def providers_cmd(as_json):
    """List installed providers (and why one is unavailable)."""
    from infraplan.errors import ProviderUnavailable
    from infraplan.providers.plugin.host import Placement, placement
    from infraplan.providers.registry import available_providers, load_provider_class

    rows = []
    for name in sorted(available_providers()):
        try:
            where = placement(load_provider_class(name), name)
        except ProviderUnavailable as exc:
            rows.append({"name": name, "available": False, "detail": str(exc)})
            continue
        ok = where is not Placement.NOT_INSTALLED
        rows.append({"name": name, "available": ok, "detail": None if ok else where.describe(name)})
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']}: {'available' if r['available'] else r['detail']}")

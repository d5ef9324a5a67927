"""Shell completion of the resource addresses in the state (`state show`, `--target`, ...).

Enabled by the shell scripts click writes (`_INFRAPLAN_COMPLETE=bash_source infraplan`).
"""

from __future__ import annotations

import click

from infraplan.cli.common import resolve_state


def complete_address(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Addresses in the state the state-path rule finds for what is typed so far.

    Read-only and quiet: no state file is created, no lock taken, and any error means no
    completions (a shell completing a word must never print a traceback).
    """
    try:
        from infraplan.state import open_store

        config = ctx.params.get("path")
        if "path" in ctx.params and ctx.args and not ctx.args[0].startswith("-"):
            # completing an option's value stops click's parse: the PATH typed before it is left in args
            config = ctx.args[0]
        location = resolve_state(ctx.params.get("state_path"), config)
        if location.is_file and not location.path.is_file():
            return []
        with open_store(location, readonly=True, busy_timeout=0.2) as store:
            addresses = {r.address for r in store.resources(include_deposed=False)}
        return sorted(a for a in addresses if a.startswith(incomplete))
    except Exception:  # noqa: BLE001 - completion is best effort by design
        return []

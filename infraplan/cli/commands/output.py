"""`infraplan output`: outputs from the state."""

from __future__ import annotations

import click

from infraplan.cli.common import existing_state, fail, handle_errors, state_option
from infraplan.cli.options import color_option, emit_json, json_option, to_json


@click.command()
@click.argument("name", required=False)
@state_option
@json_option("All outputs as one JSON object.")
@color_option
@click.option("--raw", is_flag=True, help="Print a string output without quotes (for scripts).")
@handle_errors
def output(name, state_path, as_json, raw):
    """Show outputs from the state."""
    from infraplan.state import StateStore

    outs = StateStore.open_readonly(existing_state(state_path)).snapshot().outputs
    if name:
        if name not in outs:
            fail(f"no output named {name!r} (have: {', '.join(sorted(outs)) or 'none'})")
        v = outs[name]
        if raw and isinstance(v, str):
            click.echo(v)
        else:
            emit_json(v, indent=None)
        return
    if as_json:
        emit_json(outs)
    else:
        for k, v in sorted(outs.items()):
            click.echo(f"{k} = {to_json(v, indent=None)}")

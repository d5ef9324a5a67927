"""`infraplan force-unlock`: break a stale state lock (audited)."""

from __future__ import annotations

import click

from infraplan.cli.common import existing_state, handle_errors, state_option
from infraplan.cli.options import color_option, emit_json, json_option


@click.command("force-unlock")
@click.argument("lock_id")
@state_option
@json_option("The broken lock as JSON.")
@color_option
@handle_errors
def force_unlock(lock_id, state_path, as_json):
    """Break a stale state lock (audited)."""
    from infraplan.state import StateStore

    info = StateStore(existing_state(state_path)).force_unlock(lock_id)
    if as_json:
        emit_json({"unlocked": True, "lock": info})
    else:
        click.echo(f"Lock {lock_id} broken. The state is unlocked.")

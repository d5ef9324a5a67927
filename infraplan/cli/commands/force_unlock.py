"""`infraplan force-unlock`: break a stale state lock (audited)."""

from __future__ import annotations

import sys

import click

from infraplan.cli.common import authorize, existing_state, handle_errors, state_option
from infraplan.cli.options import color_option, emit_json, json_option


@click.command("force-unlock")
@click.argument("lock_id")
@state_option
@click.option("--force", is_flag=True, help="Break the lock even if its holder may still be running; do not ask.")
@json_option("The broken lock as JSON.")
@color_option
@handle_errors
def force_unlock(lock_id, state_path, force, as_json):
    """Break a stale state lock (audited)."""
    from infraplan.state import open_store

    location = existing_state(state_path)
    authorize("force-unlock", ["*"], location)
    with open_store(location) as store:
        held = store.current_lock()
        if held is not None and held.id == lock_id and not force and not held.holder_gone():
            _confirm(held)
        info = store.force_unlock(lock_id)
    if as_json:
        emit_json({"unlocked": True, "lock": info})
    else:
        click.echo(f"Lock {lock_id} broken. The state is unlocked.")


def _confirm(held) -> None:
    """Warn that the holder may still run, and ask (no terminal: refuse without --force)."""
    from infraplan.errors import LockError
    from infraplan.state.lock import HolderState

    if held.holder_state() is HolderState.ALIVE:
        why = f"its holder is still running: {held.describe()}"
    else:
        why = f"its holder runs on another host and may still be running: {held.describe()}"
    if not sys.stdin.isatty():
        raise LockError(f"not breaking lock {held.id}: {why}; breaking it lets two runs change the state "
                        "at once; pass --force if that run is really gone")
    click.echo(f"Warning: {why}. Breaking the lock lets two runs change the state at once.", err=True)
    answer = click.prompt("Do you really want to force-unlock? Only 'yes' will be accepted.\n  Enter a value",
                          default="", show_default=False)
    if answer.strip() != "yes":
        raise LockError("force-unlock cancelled; the lock is kept")

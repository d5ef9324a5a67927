"""`infraplan taint` / `infraplan untaint`: mark a replica or router for replacement, or undo it."""

from __future__ import annotations

import click

from infraplan.cli.common import authorize, existing_state, handle_errors, notice, state_option
from infraplan.cli.completion import complete_address
from infraplan.cli.options import color_option, emit_json, json_option


def _mark(address: str, state_path, *, tainted: bool) -> None:
    """Taint or untaint `address` under the state lock, audited."""
    from infraplan.errors import StateError
    from infraplan.state import open_store
    from infraplan.state.lock import broken_notice
    from infraplan.util.identity import who

    location = existing_state(state_path)
    authorize("state-edit", [address], location)
    verb = "taint" if tainted else "untaint"
    with open_store(location) as store, store.lock(verb, who=who(), on_broken=lambda info: notice(broken_notice(info))):
        rec = store.get(address)
        if rec is None:
            raise StateError(f"no resource {address} in state")
        if not rec.kind.provider_backed:
            raise StateError(f"{address} is a {rec.kind}, which no provider runs: only replicas and routers "
                             f"can be {verb}ed (for a fleet, {verb} its replicas: {address}[0], ...)")
        with store.batch():
            if tainted:
                store.taint(address)
            else:
                store.untaint(address)
            store.audit(verb, address=address, who=who())


@click.command()
@click.argument("address", shell_complete=complete_address)
@state_option
@json_option('{"tainted": ADDRESS}.')
@color_option
@handle_errors
def taint(address, state_path, as_json):
    """Mark a replica or router for replacement: the next apply replaces it (create before destroy)."""
    _mark(address, state_path, tainted=True)
    if as_json:
        emit_json({"tainted": address})
    else:
        click.echo(f"Resource instance {address} has been marked as tainted; the next apply replaces it.")


@click.command()
@click.argument("address", shell_complete=complete_address)
@state_option
@json_option('{"untainted": ADDRESS}.')
@color_option
@handle_errors
def untaint(address, state_path, as_json):
    """Undo `infraplan taint`: the next apply keeps the resource."""
    _mark(address, state_path, tainted=False)
    if as_json:
        emit_json({"untainted": address})
    else:
        click.echo(f"Resource instance {address} has been successfully untainted.")

"""`infraplan state list|show|rm|mv`: read and edit the state, locked and audited."""

from __future__ import annotations

import click

from infraplan.cli.common import existing_state, fail, handle_errors, notice, state_option
from infraplan.cli.completion import complete_address
from infraplan.cli.options import color_option, emit_json, json_option
from infraplan.diagnostics import did_you_mean, short_repr
from infraplan.models.kinds import ResourceKind


@click.group()
def state():
    """Inspect and edit the state."""


@state.command("list")
@state_option
@json_option("A list of {address, deposed, status}.")
@color_option
@handle_errors
def state_list(state_path, as_json):
    """List resource addresses in state."""
    from infraplan.state import StateStore

    resources = StateStore.open_readonly(existing_state(state_path)).snapshot().resources
    if as_json:
        emit_json([{"address": r.address, "deposed": r.deposed, "status": r.status} for r in resources])
        return
    for r in resources:
        suffix = f" (deposed {r.deposed})" if r.deposed else ""
        status = "" if r.status == "ready" else f" [{r.status}]"
        click.echo(f"{r.address}{suffix}{status}")


@state.command("show")
@click.argument("address", shell_complete=complete_address)
@state_option
@json_option("Accepted for uniformity: the resource is printed as JSON anyway.", expose_value=False)
@color_option
@handle_errors
def state_show(address, state_path):
    """Show one resource's attributes."""
    from infraplan.state import StateStore
    from infraplan.util.redact import redact

    rec = StateStore.open_readonly(existing_state(state_path)).get(address)
    if rec is None:
        fail(f"no resource {address} in state")
    emit_json({"address": rec.address, "kind": rec.kind, "provider": rec.provider,
               "status": rec.status, "attributes": redact(rec.attributes),
               "dependencies": rec.dependencies, "created_at": rec.created_at,
               "updated_at": rec.updated_at})


@state.command("rm")
@click.argument("addresses", nargs=-1, required=True, shell_complete=complete_address)
@state_option
@json_option("{\"removed\": [addresses]}.")
@color_option
@handle_errors
def state_rm(addresses, state_path, as_json):
    """Forget resources (the real servers keep running)."""
    from infraplan.state import StateStore
    from infraplan.state.lock import broken_notice
    from infraplan.util.identity import who

    addresses = list(dict.fromkeys(addresses))  # each once, in the order given
    store = StateStore(existing_state(state_path))
    with store.lock("state rm", who=who(), on_broken=lambda info: notice(broken_notice(info))):
        missing = [a for a in addresses if store.get(a) is None]
        if missing:  # all or nothing: check every address before removing one
            known = [r.address for r in store.snapshot().resources]
            names = ", ".join(short_repr(a) for a in missing[:5]) + (" ..." if len(missing) > 5 else "")
            hint = did_you_mean(missing[0], known) if len(missing) == 1 else ""
            fail(f"not in state: {names}{hint}; nothing was removed")
        with store.batch():  # one transaction, one serial bump
            for a in addresses:
                store.remove(a)
                store.audit("state-rm", address=a, who=who())
    if as_json:
        emit_json({"removed": addresses})
    else:
        for a in addresses:
            click.echo(f"Removed {a}")


@state.command("mv")
@click.argument("src", shell_complete=complete_address)
@click.argument("dst")
@state_option
@json_option("{\"moved\": [addresses moved], \"from\": SRC, \"to\": DST}.")
@color_option
@handle_errors
def state_mv(src, dst, state_path, as_json):
    """Rename a resource in state (and its replicas)."""
    from infraplan.state import StateStore
    from infraplan.state.lock import broken_notice
    from infraplan.util.identity import who

    path = existing_state(state_path)
    rec = StateStore.open_readonly(path).get(src)  # checked before the lock: a refusal writes nothing
    src_kind = ResourceKind(rec.kind) if rec is not None else ResourceKind.of_address(src)
    dst_kind = ResourceKind.of_address(dst)
    if dst_kind is None:
        fail(f"cannot move {src} to {short_repr(dst)}: not a resource address "
             "(model.NAME, fleet.NAME, fleet.NAME[i], router.NAME)")
    if src_kind is not None and dst_kind != src_kind:
        fail(f"cannot move {src} to {dst}: a {src_kind} cannot become a {dst_kind} "
             "(state mv renames a resource, it does not change its kind)")
    store = StateStore(path)
    with store.lock("state mv", who=who(), on_broken=lambda info: notice(broken_notice(info))):
        moved = store.move(src, dst)
        store.audit("state-mv", address=src, details={"to": dst}, who=who())
    if as_json:
        emit_json({"from": src, "to": dst, "moved": moved})
    else:
        click.echo(f"Moved {src} to {dst}")

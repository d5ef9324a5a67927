"""`infraplan state list|show|rm|mv|check`: read, edit (locked, audited, backed up) and check the state."""

from __future__ import annotations

import sys

import click

from infraplan.cli.common import authorize, existing_state, fail, handle_errors, notice, state_option
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
    from infraplan.state import open_store

    with open_store(existing_state(state_path), readonly=True) as store:
        resources = store.snapshot().resources
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
    from infraplan.state import open_store
    from infraplan.util.redact import redact

    with open_store(existing_state(state_path), readonly=True) as store:
        rec = store.get(address)
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
    from infraplan.state import open_store
    from infraplan.state.lock import broken_notice
    from infraplan.util.identity import who

    addresses = list(dict.fromkeys(addresses))  # each once, in the order given
    location = existing_state(state_path)
    authorize("state-edit", addresses, location)
    with open_store(location) as store, store.lock("state rm", who=who(), on_broken=lambda info: notice(broken_notice(info))):
        missing = [a for a in addresses if store.get(a) is None]
        if missing:  # all or nothing: check every address before removing one
            known = [r.address for r in store.snapshot().resources]
            names = ", ".join(short_repr(a) for a in missing[:5]) + (" ..." if len(missing) > 5 else "")
            hint = did_you_mean(missing[0], known) if len(missing) == 1 else ""
            fail(f"not in state: {names}{hint}; nothing was removed")
        store.write_backup()
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
    from infraplan.state import open_store
    from infraplan.state.lock import broken_notice
    from infraplan.util.identity import who

    path = existing_state(state_path)
    authorize("state-edit", [src, dst], path)
    with open_store(path, readonly=True) as ro:
        rec = ro.get(src)  # checked before the lock: a refusal writes nothing
    src_kind = ResourceKind(rec.kind) if rec is not None else ResourceKind.of_address(src)
    dst_kind = ResourceKind.of_address(dst)
    if dst_kind is None:
        fail(f"cannot move {src} to {short_repr(dst)}: not a resource address "
             "(model.NAME, fleet.NAME, fleet.NAME[i], router.NAME)")
    if src_kind is not None and dst_kind != src_kind:
        fail(f"cannot move {src} to {dst}: a {src_kind} cannot become a {dst_kind} "
             "(state mv renames a resource, it does not change its kind)")
    with open_store(path) as store, store.lock("state mv", who=who(), on_broken=lambda info: notice(broken_notice(info))):
        store.write_backup()
        moved = store.move(src, dst)
        store.audit("state-mv", address=src, details={"to": dst}, who=who())
    if as_json:
        emit_json({"from": src, "to": dst, "moved": moved})
    else:
        click.echo(f"Moved {src} to {dst}")


@state.command("check")
@state_option
@json_option("{\"state\": {path, healthy, problems: [{table, row, column, problem}], lineage, serial, "
             "resources, ...}, \"backup\": the same for infraplan.db.backup}.")
@color_option
@handle_errors
def state_check(state_path, as_json):
    """Check that the state is whole; say what is wrong and what its backup would restore."""
    from infraplan.state.backup import backup_path
    from infraplan.state.integrity import check_file, damaged_error

    location = existing_state(state_path)
    if not location.is_file:
        from infraplan.errors import StateError

        raise StateError(f"state check scans a state file (SQLite) page by page; {location} is a PostgreSQL "
                         "database, whose server checks its own pages and keeps its own backups")
    path = location.path
    report = check_file(path)
    backup = check_file(backup_path(path))
    if as_json:
        emit_json({"state": report.as_dict(), "backup": backup.as_dict()})
    else:
        for line in _check_lines(report, backup):
            click.echo(line)
    if report.damage:
        message = damaged_error(path, report.damage, hint=False).one_line()
        if as_json:  # the report above is the one JSON document
            click.echo(f"Error: {message}", err=True)
            sys.exit(1)
        fail(message)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _describe(report) -> str:
    serial = "an unreadable serial" if report.serial is None else f"serial {report.serial}"
    lineage = f", lineage {report.lineage}" if report.lineage else ""
    resources = ("resources unreadable" if report.addresses is None
                 else _count(len(report.addresses), "resource"))
    return f"{serial}{lineage}, {resources}"


def _check_lines(report, backup) -> list[str]:
    """The text `state check` prints: the state's problems, then the backup and what restoring it gives."""
    lines = []
    if report.damage:
        lines.append(f"State {report.path} is damaged ({_count(len(report.damage), 'problem')}):")
        lines.extend(f"  {d.one_line()}" for d in report.damage)
    else:
        lines.append(f"State {report.path} is whole: {_describe(report)}.")
    if not backup.exists:
        lines.append(f"No backup at {backup.path}: one is written before each apply, destroy, "
                     "state rm or state mv that changes the state.")
        return lines
    if backup.damage:
        lines.append(f"Backup {backup.path} (written {backup.modified_at}) is damaged too: "
                     f"{backup.damage[0].one_line()}")
        return lines
    lines.append(f"Backup {backup.path} (written {backup.modified_at}): {_describe(backup)}.")
    if report.lineage and backup.lineage and report.lineage != backup.lineage:
        lines.append("  The backup belongs to another state (its lineage differs).")
    if report.serial is not None and backup.serial is not None and report.serial > backup.serial:
        lines.append(f"  Restoring it goes back {_count(report.serial - backup.serial, 'serial')}: changes "
                     f"recorded after serial {backup.serial} are lost (run `infraplan plan` after restoring).")
    if backup.addresses:
        lines.append(f"  It restores: {', '.join(backup.addresses)}")
    if report.addresses is not None and backup.addresses is not None:
        lost = sorted(set(report.addresses) - set(backup.addresses))
        if lost:
            lines.append(f"  Not in the backup (forgotten on restore): {', '.join(lost)}")
    if report.damage:
        lines.append(f"  To restore it: move {report.path} and its -wal and -shm files aside, then copy "
                     f"{backup.path} to {report.path}.")
    return lines

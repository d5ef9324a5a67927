"""`infraplan audit list|verify`: the audit log, and the proof that nobody edited it by hand."""

from __future__ import annotations

import click

from infraplan.cli.common import existing_state, fail, handle_errors, state_option
from infraplan.cli.options import color_option, emit_json, json_option


@click.group()
def audit():
    """The append-only, hash-chained audit log of the state."""


@audit.command("list")
@state_option
@click.option("--actor", metavar="PATTERN", help="Only rows by actors matching PATTERN (shell-style).")
@click.option("--event", "events", multiple=True, metavar="NAME",
              help="Only these events (apply, destroy, state-rm, access-denied, rollback, ...); repeatable.")
@click.option("--address", metavar="PATTERN", help="Only rows about addresses matching PATTERN.")
@click.option("--since", metavar="TIME", help="Only rows at or after TIME (ISO 8601 UTC, e.g. 2026-12-01).")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many rows (newest first).")
@json_option("The rows as JSON.")
@color_option
@handle_errors
def audit_list(state_path, actor, events, address, since, limit, as_json):
    """Audit rows, newest first: when, what, on which address, by whom."""
    import fnmatch

    from infraplan.state import open_store

    with open_store(existing_state(state_path), readonly=True) as store:
        rows = store.audit_log()
    out = [r for r in rows
           if (not actor or fnmatch.fnmatchcase(r.who or "", actor))
           and (not events or r.event in events)
           and (not address or fnmatch.fnmatchcase(r.address or "", address))
           and (not since or (r.at or "") >= since)]
    out = out[:limit] if limit else out
    if as_json:
        emit_json([{"id": r.id, "at": r.at, "event": r.event, "address": r.address, "who": r.who,
                    "details": r.details} for r in out])
        return
    for r in out:
        click.echo(f"#{r.id} {r.at} {r.event}" + (f" {r.address}" if r.address else "") + f" by {r.who}")
    if not out:
        click.echo("No audit rows match.")


@audit.command("verify")
@state_option
@json_option("The result as JSON.")
@color_option
@handle_errors
def audit_verify(state_path, as_json):
    """Check the hash chain: exit 1 naming the first row that was edited, deleted or inserted by hand."""
    from infraplan.state import open_store
    from infraplan.state.audit_chain import verify

    with open_store(existing_state(state_path), readonly=True) as store:
        report = verify(store.audit_rows())
    if as_json:
        emit_json(report.to_json())
    elif report.ok:
        older = f" ({report.unchained} older rows from before the chain)" if report.unchained else ""
        click.echo(f"The audit log is intact: {report.rows} rows, every link and hash matches{older}.")
    if not report.ok:
        if as_json:
            raise SystemExit(1)
        fail(f"the audit log was changed by hand at row #{report.broken_at}: {report.why}")

"""`infraplan history`: past applies and destroys."""

from __future__ import annotations

import click

from infraplan.cli.common import existing_state, handle_errors, state_option
from infraplan.cli.options import color_option, emit_json, json_option


@click.command()
@state_option
@click.option("--limit", default=20, show_default=True, help="Show at most this many runs, newest first.")
@json_option("The history rows as JSON.")
@color_option
@handle_errors
def history(state_path, limit, as_json):
    """Show past applies and destroys."""
    from dataclasses import asdict

    from infraplan.state import open_store

    with open_store(existing_state(state_path), readonly=True) as store:
        rows = [asdict(h) for h in store.history(limit=limit)]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("No history yet.")
    for r in rows:
        s = r.get("summary") or {}
        click.echo(f"#{r.get('id')} {r.get('finished_at') or r.get('started_at')} {r.get('operation')} "
                   f"{r.get('status')} by {r.get('who')}: +{s.get('add', 0)} ~{s.get('change', 0)} -{s.get('destroy', 0)} "
                   f"plan {str(r.get('plan_hash'))[:12]}")

"""`infraplan approve PLANFILE` and `infraplan approvals PLANFILE`: approvals bound to a saved plan."""

from __future__ import annotations

import click

from infraplan.cli.common import explicit_state, fail, handle_errors, open_workspace
from infraplan.cli.options import color_option, emit_json, json_option


def _saved(planfile, state_path):
    from infraplan.plan.planfile import load_plan

    saved, opts = load_plan(planfile)
    state = explicit_state(state_path, recorded=opts.state or None)
    ws = open_workspace(saved.config_path, state, list(opts.var_args), list(opts.var_files))
    return saved, opts, ws


@click.command()
@click.argument("planfile", type=click.Path(exists=True, dir_okay=False))
@click.option("--comment", default="", help="Why it is approved (kept with the approval).")
@click.option("--state", "state_path", type=click.Path(), default=None, help="State (default: the plan's).")
@json_option("The approval as JSON.")
@color_option
@handle_errors
def approve(planfile, comment, state_path, as_json):
    """Approve a saved plan: an audited approval bound to its digest (never the author's own)."""
    from infraplan.policy.access import AccessAction
    from infraplan.policy.approvals import APPROVE_EVENT
    from infraplan.state.backends import open_store
    from infraplan.util.identity import who

    saved, opts, ws = _saved(planfile, state_path)
    actor = who()
    if opts.author and actor == opts.author:
        fail(f"{actor} made this plan: its approvals must come from someone else")
    changed = [c.address for c in saved.changes if c.action not in ("noop", "read")]
    ws.authorize(AccessAction.APPROVE, changed)
    digest = saved.digest()
    with open_store(ws.state) as store:
        store.audit(APPROVE_EVENT, who=actor, details={"plan_digest": digest, "comment": comment[:500],
                                                       "author": opts.author, "plan_file": str(planfile)})
    if as_json:
        emit_json({"approved": True, "plan_digest": digest, "by": actor, "comment": comment})
    else:
        click.echo(f"Approved plan {digest[:12]} ({planfile}) as {actor}.")


@click.command()
@click.argument("planfile", type=click.Path(exists=True, dir_okay=False))
@click.option("--state", "state_path", type=click.Path(), default=None, help="State (default: the plan's).")
@json_option("The approvals and the rules they count for, as JSON.")
@color_option
@handle_errors
def approvals(planfile, state_path, as_json):
    """The approvals a saved plan has, and whether each rule that covers it is met."""
    from infraplan.policy.approvals import APPROVE_EVENT
    from infraplan.state.backends import open_store

    saved, opts, ws = _saved(planfile, state_path)
    digest = saved.digest()
    with open_store(ws.state, readonly=True) as store:
        rows = [e for e in reversed(store.audit_log())
                if e.event == APPROVE_EVENT and (e.details or {}).get("plan_digest") == digest]
    reqs = ws.approval_requirements(saved, author=opts.author, digest=digest)
    if as_json:
        emit_json({"plan_digest": digest, "author": opts.author,
                   "approvals": [{"by": e.who, "at": e.at, "comment": (e.details or {}).get("comment", "")}
                                 for e in rows],
                   "rules": [{"rule": r.rule, "count": r.count, "approvers": r.approvers, "met": r.met,
                              "addresses": r.addresses} for r in reqs]})
        return
    click.echo(f"Plan {digest[:12]} by {opts.author or '(unknown)'}:")
    for e in rows:
        note = (e.details or {}).get("comment")
        click.echo(f"  approved by {e.who} at {e.at}" + (f": {note}" if note else ""))
    if not rows:
        click.echo("  no approvals")
    for r in reqs:
        click.echo(f"  rule {r.rule!r}: {len(r.approvers)} of {r.count} " + ("(met)" if r.met else "(missing)"))
    if not reqs:
        click.echo("  no approval rule covers it")

"""`infraplan apply` and `infraplan destroy`: carry out a plan, after approval."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from infraplan.cli.commands.plan import plan_options
from infraplan.cli.common import config_options, explicit_state, fail, handle_errors, open_workspace, resolve_state
from infraplan.cli.completion import complete_address
from infraplan.cli.options import color_option, compact_warnings, compact_warnings_option, emit_json, json_option
from infraplan.cli.signals import stops_cleanly
from infraplan.cli.views.progress import finish, progress


def approve(console, the_plan, auto_approve: bool, verb: str) -> bool:
    """Whether to go on: --auto-approve, else a typed 'yes' at a terminal; no terminal is an error."""
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        from infraplan.errors import InfraplanError

        raise InfraplanError(f"refusing to {verb} without approval: no terminal to ask; pass --auto-approve")
    console.print("\nDo you want to perform these actions? Only 'yes' will be accepted.")
    answer = click.prompt("  Enter a value", default="", show_default=False)
    return answer.strip() == "yes"


def looks_like_plan_file(path: str) -> bool:
    """Whether `apply PATH` names a saved plan (a JSON file) rather than a config directory or file."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with p.open("rb") as fh:
            head = fh.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")


def _refuse_planning_options(plan_file: str, *, targets, replace, refresh_only: bool) -> None:
    """A saved plan's targets and planning options were fixed when it was made (Terraform refuses
    them too); ignoring one would apply more than the user asked for."""
    from click.core import ParameterSource

    given_refresh = click.get_current_context().get_parameter_source("refresh") == ParameterSource.COMMANDLINE
    for flag, given in (("--target", targets), ("--replace", replace), ("--refresh-only", refresh_only),
                        ("--refresh", given_refresh)):
        if given:
            fail(f"{flag} cannot be used with a saved plan ({plan_file}): it was fixed when the plan was made; "
                 f"run `infraplan plan {flag}... --out FILE` again, then `infraplan apply FILE`")


@click.command()
@click.argument("path", default=".", type=click.Path())
@config_options
@plan_options
@click.option("--auto-approve", is_flag=True, help="Skip the interactive approval.")
@json_option("One JSON event per line.")
@color_option
@compact_warnings_option
@click.option("--refresh-only", is_flag=True, help="Only accept what refresh found into state; no infrastructure changes (audited).")
@click.pass_obj
@handle_errors
@stops_cleanly
def apply(obj, path, state_path, var_args, var_files, refresh, targets, replace, parallelism, force, policies,
          accept_lineage, auto_approve, as_json, refresh_only):
    """Create, update and destroy resources to match the configuration (or a saved plan FILE)."""
    from infraplan.cli.views.plan import render_plan
    from infraplan.plan.planner import PlanOptions

    if looks_like_plan_file(path):
        _refuse_planning_options(path, targets=targets, replace=replace, refresh_only=refresh_only)
        from infraplan.plan.planfile import load_plan

        saved, opts = load_plan(path)  # a clean error for a corrupt or foreign file
        state = explicit_state(state_path, recorded=opts.state or None)
        ws = open_workspace(saved.config_path, state,
                        list(opts.var_args) + list(var_args), list(opts.var_files) + list(var_files))
        ws.policy_paths, ws.accept_lineage = list(policies), accept_lineage
        ws.refuse_if_locked()  # before planning: a running apply is named at once
        options = PlanOptions(refresh=bool(opts.refresh), targets=tuple(opts.targets),
                              replace=tuple(opts.replace), destroy=bool(opts.destroy),
                              parallelism=parallelism, force=bool(opts.force) or force)
        refresh_only = bool(opts.refresh_only)
        if refresh_only:
            from infraplan.plan.refresh_only import check_saved

            the_plan = check_saved(ws, saved, parallelism=parallelism)
        else:
            the_plan = ws.check_saved_plan(saved, options)
            missing = [r for r in ws.approval_requirements(saved, author=opts.author, digest=saved.digest())
                       if not r.met]
            if missing:  # bound to this plan's digest: approvals of another plan never count
                for r in missing[1:]:
                    click.echo(f"Error: {r.missing_line(opts.author)}", err=True)
                fail(missing[0].missing_line(opts.author))
        approved = True  # a saved plan was reviewed when it was made
    else:
        ws = open_workspace(path, state_path, var_args, var_files)
        ws.policy_paths, ws.accept_lineage = list(policies), accept_lineage
        ws.refuse_if_locked()
        if refresh_only:
            from infraplan.plan.refresh_only import refresh_only_plan

            the_plan = refresh_only_plan(ws, parallelism=parallelism, targets=targets)
        else:
            the_plan = ws.plan(PlanOptions(refresh=refresh, targets=targets, replace=replace, parallelism=parallelism,
                                           force=force))
        if not as_json:
            render_plan(the_plan, obj.console(), compact_warnings=compact_warnings())
        needs = [] if refresh_only else ws.approval_requirements(the_plan)
        if needs:
            rules = ", ".join(f"{r.rule!r} ({r.count} from others than you)" for r in needs)
            fail(f"this plan needs approvals ({rules}): save it with `infraplan plan --out FILE`, have it "
                 "approved with `infraplan approve FILE`, then run `infraplan apply FILE`")
        if not the_plan.has_changes and not any(c.action == "refresh" for c in the_plan.changes):
            if as_json:
                emit_json({"type": "summary", "done": 0, "failed": 0, "skipped": 0}, indent=None)
            return
        approved = approve(obj.console(), the_plan, auto_approve, "apply")
    if not approved:
        fail("apply cancelled; nothing was changed")
    if refresh_only:
        from infraplan.plan.refresh_only import apply_refresh_only

        result = apply_refresh_only(ws, the_plan, parallelism=parallelism, on_event=progress(obj.console(), as_json))
    else:
        result = ws.apply(the_plan, parallelism=parallelism, on_event=progress(obj.console(), as_json))
    finish(obj.console(), ws, result, as_json, the_plan)


@click.command()
@click.argument("path", default=".", type=click.Path())
@config_options
@click.option("--target", "targets", multiple=True, metavar="ADDR", shell_complete=complete_address,
              help="Destroy only ADDR and what depends on it.")
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Concurrent provider calls.")
@click.option("--refresh", type=click.BOOL, default=True, show_default=True,
              help="Ask providers what really runs before planning (--refresh=false to skip).")
@click.option("--state-only", is_flag=True,
              help="Plan from the state alone: no config files or variables needed; each resource's provider "
                   "(as recorded in state) runs with default settings.")
@click.option("--auto-approve", is_flag=True, help="Skip the interactive approval.")
@json_option("One JSON event per line.")
@color_option
@compact_warnings_option
@click.pass_obj
@handle_errors
@stops_cleanly
def destroy(obj, path, state_path, var_args, var_files, targets, parallelism, refresh, state_only, auto_approve,
            as_json):
    """Destroy everything this state manages."""
    from infraplan.cli.views.plan import render_plan
    from infraplan.plan.planner import PlanOptions

    if state_only:
        if var_args or var_files:
            raise click.UsageError("--state-only takes no --var or --var-file: nothing is read from the config")
        from infraplan.cli.common import notice
        from infraplan.workspace import StateOnlyWorkspace

        state = resolve_state(state_path, path)
        if not state.exists():
            from infraplan.errors import InfraplanError

            raise InfraplanError(f"no state at {state}")
        ws = StateOnlyWorkspace(state, notify=notice)
    else:
        ws = open_workspace(path, state_path, var_args, var_files)
    ws.refuse_if_locked()
    the_plan = ws.plan(PlanOptions(destroy=True, targets=targets, parallelism=parallelism, refresh=refresh))
    if not as_json:
        render_plan(the_plan, obj.console(), compact_warnings=compact_warnings())
    if not the_plan.has_changes:
        return
    if not approve(obj.console(), the_plan, auto_approve, "destroy"):
        fail("destroy cancelled; nothing was changed")
    result = ws.apply(the_plan, parallelism=parallelism, on_event=progress(obj.console(), as_json))
    finish(obj.console(), ws, result, as_json, the_plan)

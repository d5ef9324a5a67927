"""`infraplan plan`: show what apply would change (and save it with --out)."""

from __future__ import annotations

import sys

import click

from infraplan.cli.common import config_options, handle_errors, open_workspace
from infraplan.cli.completion import complete_address
from infraplan.cli.options import color_option, compact_warnings, compact_warnings_option, emit_json, json_option
from infraplan.util.gc_pause import no_cyclic_gc


def plan_options(fn):
    """The options plan and apply share: --refresh, --target, --replace, --parallelism, --force."""
    fn = click.option("--refresh", type=click.BOOL, default=True, show_default=True,
                      help="Ask providers what really runs before planning (--refresh=false to skip).")(fn)
    fn = click.option("--target", "targets", multiple=True, metavar="ADDR", shell_complete=complete_address,
                      help="Limit to ADDR and its dependencies.")(fn)
    fn = click.option("--replace", "replace", multiple=True, metavar="ADDR", shell_complete=complete_address,
                      help="Force replacement of ADDR.")(fn)
    fn = click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 1000),
                      help="Concurrent provider calls.")(fn)
    fn = click.option("--force", is_flag=True, help="Roll out again a version whose rollout was rolled back.")(fn)
    fn = click.option("--policy", "policies", multiple=True, type=click.Path(), metavar="PATH",
                      help="A Rego policy file or folder, judged with those in policies/ beside the config.")(fn)
    fn = click.option("--accept-lineage", is_flag=True,
                      help="Accept a state of another lineage where this config's state was (it was replaced "
                           "on purpose).")(fn)
    return fn


@click.command()
@click.argument("path", default=".", type=click.Path())
@config_options
@plan_options
@click.option("--destroy", is_flag=True, help="Plan to destroy everything in state.")
@click.option("--out", "out", type=click.Path(), help="Save the plan for `infraplan apply FILE`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 no changes, 1 error, 2 changes.")
@json_option("Print the plan as JSON (format_version 1.0).")
@color_option
@compact_warnings_option
@click.option("--refresh-only", is_flag=True, help="Only accept what refresh found into state; no infrastructure changes.")
@click.option("--max-hourly-cost", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="Fail (exit 1, nothing saved) when the planned fleets cost more than USD per hour.")
@click.pass_obj
@handle_errors
def plan(obj, path, state_path, var_args, var_files, refresh, targets, replace, parallelism, force, policies,
         accept_lineage, destroy, out, detailed_exitcode, as_json, refresh_only, max_hourly_cost):
    """Show what apply would change."""
    with no_cyclic_gc():
        from infraplan.cli.views.plan import render_plan
        from infraplan.plan.planner import PlanOptions

        ws = open_workspace(path, state_path, var_args, var_files)
        ws.policy_paths, ws.accept_lineage = list(policies), accept_lineage
        held = ws.current_lock()
        if held is not None:
            from infraplan.state.lock import in_progress_notice

            ws.notify(in_progress_notice(held))
        if refresh_only:
            from infraplan.plan.refresh_only import refresh_only_plan

            the_plan = refresh_only_plan(ws, parallelism=parallelism, targets=targets)
        else:
            the_plan = ws.plan(PlanOptions(refresh=refresh, targets=targets, replace=replace, destroy=destroy,
                                           parallelism=parallelism, force=force))
        if as_json:
            emit_json(the_plan.to_json(), sort_keys=True)
        else:
            render_plan(the_plan, obj.console(text_only=True), compact_warnings=compact_warnings())
    if max_hourly_cost is not None:
        from infraplan.cost import over_budget

        over_budget(the_plan.cost, max_hourly_cost)
    if out:
        from infraplan.plan.planfile import ApplyOptions, apply_hint, public_var_args, save_plan, sensitive_variables
        from infraplan.util.identity import who

        kept, withheld = public_var_args(var_args, sensitive_variables(ws.config))
        save_plan(the_plan, out, ApplyOptions(
            refresh=refresh, targets=list(targets), replace=list(replace), destroy=destroy, var_args=kept,
            var_files=list(var_files), state=ws.state.without_password, refresh_only=refresh_only, force=force,
            withheld_vars=withheld, author=who()))
        if not as_json:
            click.echo(f"\nSaved the plan to {out}. To carry it out exactly, run: {apply_hint(out, withheld)}")
    if detailed_exitcode and (the_plan.has_changes or (refresh_only and the_plan.changes)):
        sys.exit(2)

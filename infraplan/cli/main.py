"""The `infraplan` command line: click commands that call the library and turn its
errors into one-line messages and exit codes.

Exit codes: 0 success; 1 error (usage errors included); 2 only for "changes" (plan
--detailed-exitcode) and "drift found" (drift).

State file, for every command: --state, else $INFRAPLAN_STATE, else infraplan.db beside the
config PATH (./infraplan.db for commands without one). INFRAPLAN_LOG=debug|info|warn logs
to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path

import click

from infraplan import __version__
from infraplan.cli.completion import complete_address
from infraplan.cli.options import color_option, console, emit_json, json_option, to_json


class Ctx:
    """The root's context object: the console every command prints through."""

    def console(self, stderr: bool = False, *, text_only: bool = False):
        return console(stderr=stderr, text_only=text_only)


from infraplan.cli.common import LOG_ENV, Cli, config_options, configure_logging  # noqa: E402
from infraplan.cli.common import existing_state as _existing_state  # noqa: E402
from infraplan.cli.common import resolve_state_path as _state_path  # noqa: E402
from infraplan.cli.common import state_option  # noqa: E402
from infraplan.cli.common import fail as _fail  # noqa: E402
from infraplan.cli.common import handle_errors as _handle  # noqa: E402
from infraplan.util.gc_pause import no_cyclic_gc  # noqa: E402
from infraplan.cli.common import open_workspace as _workspace  # noqa: E402


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="infraplan")
@color_option
@click.pass_context
@_handle
def cli(ctx):
    """Plan, apply and watch fleets of LLM model servers.

    INFRAPLAN_LOG=debug|info|warn logs to stderr; INFRAPLAN_STATE names the state file.
    """
    configure_logging(os.environ.get(LOG_ENV))
    ctx.obj = Ctx()


# -- validate -------------------------------------------------------------------
@cli.command()
@click.argument("path", default=".", type=click.Path())
@config_options
@json_option("Machine-readable diagnostics.")
@color_option
@_handle
def validate(path, state_path, var_args, var_files, as_json):
    """Check the configuration; report every error at once."""
    from infraplan.config import validate_config

    config, diags = validate_config(path, var_args=list(var_args), var_files=list(var_files), env=os.environ)
    errors = [d for d in diags if d.severity == "error"]
    if as_json:
        emit_json({"valid": not errors, "diagnostics": [d.to_json() for d in diags]})
    else:
        for d in diags:
            click.echo(d.one_line(), err=bool(errors))
        if not errors:
            n = len(config.models) + len(config.fleets)
            click.echo(f"Success! The configuration is valid ({n} resource blocks).")
    sys.exit(1 if errors else 0)


# -- plan -----------------------------------------------------------------------
def plan_options(fn):
    fn = click.option("--refresh", type=click.BOOL, default=True, show_default=True,
                      help="Ask providers what really runs before planning (--refresh=false to skip).")(fn)
    fn = click.option("--target", "targets", multiple=True, metavar="ADDR", shell_complete=complete_address,
                      help="Limit to ADDR and its dependencies.")(fn)
    fn = click.option("--replace", "replace", multiple=True, metavar="ADDR", shell_complete=complete_address,
                      help="Force replacement of ADDR.")(fn)
    fn = click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 1000),
                      help="Concurrent provider calls.")(fn)
    fn = click.option("--force", is_flag=True, help="Roll out again a version whose rollout was rolled back.")(fn)
    return fn


@cli.command()
@click.argument("path", default=".", type=click.Path())
@config_options
@plan_options
@click.option("--destroy", is_flag=True, help="Plan to destroy everything in state.")
@click.option("--out", "out", type=click.Path(), help="Save the plan for `infraplan apply FILE`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 no changes, 1 error, 2 changes.")
@json_option("Print the plan as JSON (format_version 1.0).")
@color_option
@click.option("--refresh-only", is_flag=True, help="Only accept what refresh found into state; no infrastructure changes.")
@click.option("--max-hourly-cost", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="Fail (exit 1, nothing saved) when the planned fleets cost more than USD per hour.")
@click.pass_obj
@_handle
def plan(obj, path, state_path, var_args, var_files, refresh, targets, replace, parallelism, force, destroy, out,
         detailed_exitcode, as_json, refresh_only, max_hourly_cost):
    """Show what apply would change."""
    with no_cyclic_gc():
        from infraplan.plan.planner import PlanOptions
        from infraplan.cli.views.plan import render_plan

        ws = _workspace(path, state_path, var_args, var_files)
        if refresh_only:
            from infraplan.plan.refresh_only import refresh_only_plan

            the_plan = refresh_only_plan(ws, parallelism=parallelism, targets=targets)
        else:
            the_plan = ws.plan(PlanOptions(refresh=refresh, targets=targets, replace=replace, destroy=destroy,
                                           parallelism=parallelism, force=force))
        if as_json:
            emit_json(the_plan.to_json(), sort_keys=True)
        else:
            render_plan(the_plan, obj.console(text_only=True))
    if max_hourly_cost is not None:
        from infraplan.cost import over_budget

        over_budget(the_plan.cost, max_hourly_cost)
    if out:
        from infraplan.plan.planfile import ApplyOptions, apply_hint, public_var_args, save_plan, sensitive_variables

        kept, withheld = public_var_args(var_args, sensitive_variables(ws.config))
        save_plan(the_plan, out, ApplyOptions(
            refresh=refresh, targets=list(targets), replace=list(replace), destroy=destroy, var_args=kept,
            var_files=list(var_files), state=str(ws.state_path), refresh_only=refresh_only, force=force,
            withheld_vars=withheld))
        if not as_json:
            click.echo(f"\nSaved the plan to {out}. To carry it out exactly, run: {apply_hint(out, withheld)}")
    if detailed_exitcode and (the_plan.has_changes or (refresh_only and the_plan.changes)):
        sys.exit(2)


# -- apply / destroy ----------------------------------------------------------------
def _approve(console, the_plan, auto_approve: bool, verb: str) -> bool:
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        from infraplan.errors import InfraplanError

        raise InfraplanError(f"refusing to {verb} without approval: no terminal to ask; pass --auto-approve")
    console.print(f"\nDo you want to perform these actions? Only 'yes' will be accepted.")
    answer = click.prompt("  Enter a value", default="", show_default=False)
    return answer.strip() == "yes"


def _progress(obj, as_json):
    import time as _t

    console = obj.console()
    starts: dict[str, float] = {}
    fancy = console.is_terminal and not console.no_color

    def say(text: str, style: str | None = None) -> None:
        if fancy:
            console.print(text, style=style, markup=False, highlight=False)
        else:
            sys.stdout.write(text + "\n")

    def on_event(ev):
        if as_json:
            emit_json({"@timestamp": _t.time(), **ev}, indent=None)
            return
        if ev["type"] == "rollout":
            details = {k: v for k, v in ev.items() if k not in ("type", "fleet", "step", "at", "evidence")}
            extra = " ".join(f"{k}={v}" for k, v in details.items())
            style = "red" if ev.get("passed") is False or ev.get("step") == "rollback" else None
            say(f"{ev['fleet']}: rollout {ev.get('step')}" + (f" ({extra})" if extra else ""), style)
            return
        key = f"{ev['op']}:{ev['address']}"
        label = {"create": "Creating", "update": "Updating", "delete": "Destroying", "write": "Recording",
                 "forget": "Forgetting"}.get(ev["op"], ev["op"])
        old = " (old)" if ev.get("deposed") or (ev["op"] == "delete" and ev.get("action") == "replace") else ""
        if ev["type"] == "start":
            starts[key] = _t.monotonic()
            if ev["op"] in ("create", "update", "delete"):
                say(f"{ev['address']}{old}: {label}...")
        elif ev["type"] == "done":
            if ev["op"] in ("create", "update", "delete"):
                done = {"create": "Creation", "update": "Update", "delete": "Destruction"}[ev["op"]]
                say(f"{ev['address']}{old}: {done} complete after {ev.get('elapsed', 0):.1f}s")
        elif ev["type"] == "still":
            say(f"{ev['address']}{old}: Still {label.lower()}... [{ev.get('elapsed', 0):.0f}s elapsed]")
        elif ev["type"] == "failed":
            say(f"{ev['address']}{old}: failed: {ev.get('error')}", "red")
        elif ev["type"] == "skipped":
            say(f"{ev['address']}{old}: skipped (a dependency failed)", "yellow")

    return on_event


def _finish(obj, ws, result, as_json, the_plan):
    from infraplan.cli.views.plan import fmt

    summary = result.summary()
    if as_json:
        emit_json({"type": "summary", **summary, "outputs": ws.compute_outputs(ws.store())
                   if not the_plan.destroy else {}}, indent=None)
    else:
        c = obj.console()
        style = "green" if result.ok else "red"
        verb = "Destroy" if the_plan.destroy else "Apply"
        c.print(f"\n[{style}]{verb} {'complete' if result.ok else 'finished with errors'}! "
                f"Resources: {summary['added']} added, {summary['changed']} changed, {summary['destroyed']} destroyed. "
                f"Steps: {summary['done']} done, {summary['failed']} failed, {summary['skipped']} skipped.[/{style}]",
                markup=True)
        for nid, reason in result.failed.items():
            c.print(f"  failed  {nid}: {reason}")
        for nid in result.skipped:
            c.print(f"  skipped {nid}")
        if not the_plan.destroy and result.ok:
            outs = ws.store().outputs()
            if outs:
                c.print("\nOutputs:")
                sens = ws.config.outputs
                for k, v in sorted(outs.items()):
                    shown = "(sensitive value)" if k in sens and sens[k].sensitive else fmt(v)
                    c.print(f"  {k} = {shown}")
    if not result.ok:
        sys.exit(1)


def _looks_like_plan_file(path: str) -> bool:
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with p.open("rb") as fh:
            head = fh.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")


@cli.command()
@click.argument("path", default=".", type=click.Path())
@config_options
@plan_options
@click.option("--auto-approve", is_flag=True, help="Skip the interactive approval.")
@json_option("One JSON event per line.")
@color_option
@click.option("--refresh-only", is_flag=True, help="Only accept what refresh found into state; no infrastructure changes (audited).")
@click.pass_obj
@_handle
def apply(obj, path, state_path, var_args, var_files, refresh, targets, replace, parallelism, force, auto_approve,
          as_json, refresh_only):
    """Create, update and destroy resources to match the configuration (or a saved plan FILE)."""
    from infraplan.plan.planner import PlanOptions
    from infraplan.cli.views.plan import render_plan

    if _looks_like_plan_file(path):
        from infraplan.plan.planfile import load_plan

        saved, opts = load_plan(path)  # a clean error for a corrupt or foreign file
        state = _state_path(state_path, saved.config_path, recorded=opts.state or None)
        ws = _workspace(saved.config_path, state,
                        list(opts.var_args) + list(var_args), list(opts.var_files) + list(var_files))
        options = PlanOptions(refresh=bool(opts.refresh), targets=tuple(opts.targets),
                              replace=tuple(opts.replace), destroy=bool(opts.destroy),
                              parallelism=parallelism, force=bool(opts.force) or force)
        refresh_only = bool(opts.refresh_only)
        if refresh_only:
            from infraplan.plan.refresh_only import check_saved

            the_plan = check_saved(ws, saved, parallelism=parallelism)
        else:
            the_plan = ws.check_saved_plan(saved, options)
        approved = True  # a saved plan was reviewed when it was made
    else:
        ws = _workspace(path, state_path, var_args, var_files)
        if refresh_only:
            from infraplan.plan.refresh_only import refresh_only_plan

            the_plan = refresh_only_plan(ws, parallelism=parallelism, targets=targets)
        else:
            the_plan = ws.plan(PlanOptions(refresh=refresh, targets=targets, replace=replace, parallelism=parallelism,
                                           force=force))
        if not as_json:
            render_plan(the_plan, obj.console())
        if not the_plan.has_changes and not any(c.action == "refresh" for c in the_plan.changes):
            if as_json:
                emit_json({"type": "summary", "done": 0, "failed": 0, "skipped": 0}, indent=None)
            return
        approved = _approve(obj.console(), the_plan, auto_approve, "apply")
    if not approved:
        _fail("apply cancelled; nothing was changed")
    if refresh_only:
        from infraplan.plan.refresh_only import apply_refresh_only

        result = apply_refresh_only(ws, the_plan, parallelism=parallelism, on_event=_progress(obj, as_json))
    else:
        result = ws.apply(the_plan, parallelism=parallelism, on_event=_progress(obj, as_json))
    _finish(obj, ws, result, as_json, the_plan)


@cli.command()
@click.argument("path", default=".", type=click.Path())
@config_options
@click.option("--target", "targets", multiple=True, metavar="ADDR", shell_complete=complete_address)
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--refresh", type=click.BOOL, default=True)
@click.option("--auto-approve", is_flag=True)
@json_option("One JSON event per line.")
@color_option
@click.pass_obj
@_handle
def destroy(obj, path, state_path, var_args, var_files, targets, parallelism, refresh, auto_approve, as_json):
    """Destroy everything this state manages."""
    from infraplan.plan.planner import PlanOptions
    from infraplan.cli.views.plan import render_plan

    ws = _workspace(path, state_path, var_args, var_files)
    the_plan = ws.plan(PlanOptions(destroy=True, targets=targets, parallelism=parallelism, refresh=refresh))
    if not as_json:
        render_plan(the_plan, obj.console())
    if not the_plan.has_changes:
        return
    if not _approve(obj.console(), the_plan, auto_approve, "destroy"):
        _fail("destroy cancelled; nothing was changed")
    result = ws.apply(the_plan, parallelism=parallelism, on_event=_progress(obj, as_json))
    _finish(obj, ws, result, as_json, the_plan)


@cli.command()
@click.argument("path", default=".", type=click.Path())
@click.option("--to", "to_id", type=int, default=None,
              help="History id to go back to (see `infraplan history`); default: the previous applied config.")
@click.option("--state", "state_path", type=click.Path(), default=None,
              help="State file (default: $INFRAPLAN_STATE, else infraplan.db beside the config).")
@click.option("--var", "var_args", multiple=True, metavar="NAME=VALUE",
              help="Values for sensitive variables (they are never stored in history).")
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--auto-approve", is_flag=True)
@json_option("One JSON event per line.")
@color_option
@click.pass_obj
@_handle
def rollback(obj, path, to_id, state_path, var_args, parallelism, auto_approve, as_json):
    """Apply a previous config again, from the history, with the same strategies."""
    import tempfile

    from infraplan.plan.planner import PlanOptions
    from infraplan.cli.views.plan import render_plan
    from infraplan.state import StateStore
    from infraplan.workspace import Workspace

    state = _state_path(state_path, path)
    if not state.exists():
        from infraplan.errors import InfraplanError

        raise InfraplanError(f"no state at {state}")
    store = StateStore.open_readonly(state)
    entry = _rollback_target(store.history(), to_id)
    snap = entry.desired_config
    with tempfile.TemporaryDirectory(prefix="infraplan-rollback-") as tmp:
        for name, text in snap["files"].items():
            (Path(tmp) / name).write_text(text)
        stored = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in snap["variables"].items()]
        ws = Workspace(tmp, state_path=state, var_args=stored + list(var_args))
        if not as_json:
            click.echo(f"Rolling back to the config of history #{entry.id} ({entry.finished_at}, "
                       f"plan {str(entry.plan_hash)[:12]}).\n")
        the_plan = ws.plan(PlanOptions(parallelism=parallelism))
        if not as_json:
            render_plan(the_plan, obj.console())
        if not the_plan.has_changes:
            return
        if not _approve(obj.console(), the_plan, auto_approve, "roll back"):
            _fail("rollback cancelled; nothing was changed")
        result = ws.apply(the_plan, parallelism=parallelism, on_event=_progress(obj, as_json), operation="rollback")
        _finish(obj, ws, result, as_json, the_plan)
        if not as_json:
            click.echo("\nNote: your config files still describe the newer version; fix them before the next apply.")


def _rollback_target(history, to_id):
    from infraplan.errors import InfraplanError

    applied = [h for h in history if h.status == "ok" and h.operation in ("apply", "rollback")
               and (h.desired_config or {}).get("files")]
    if to_id is not None:
        for h in applied:
            if h.id == to_id:
                return h
        raise InfraplanError(f"history #{to_id} is not a successful apply with a stored config "
                             f"(have: {', '.join('#' + str(h.id) for h in applied) or 'none'})")
    if not applied:
        raise InfraplanError("no earlier applied config in the history to roll back to")
    current = applied[0].config_digest
    for h in applied[1:]:
        if h.config_digest != current:
            return h
    raise InfraplanError("the history holds no earlier config that differs from the current one")


# -- read-only views -------------------------------------------------------------------
@cli.command()
@click.argument("name", required=False)
@state_option
@json_option("All outputs as one JSON object.")
@color_option
@click.option("--raw", is_flag=True, help="Print a string output without quotes (for scripts).")
@_handle
def output(name, state_path, as_json, raw):
    """Show outputs from the state."""
    from infraplan.state import StateStore

    outs = StateStore.open_readonly(_existing_state(state_path)).snapshot().outputs
    if name:
        if name not in outs:
            _fail(f"no output named {name!r} (have: {', '.join(sorted(outs)) or 'none'})")
        v = outs[name]
        if raw and isinstance(v, str):
            click.echo(v)
        else:
            emit_json(v, indent=None)
        return
    if as_json:
        emit_json(outs)
    else:
        for k, v in sorted(outs.items()):
            click.echo(f"{k} = {to_json(v, indent=None)}")


class ShowFormat(StrEnum):
    """What `show --json PLANFILE` prints: infraplan's plan JSON, or Terraform's shape of it."""

    NATIVE = "native"
    TERRAFORM = "terraform"


@cli.command()
@click.argument("planfile", required=False, type=click.Path())
@state_option
@json_option("The plan or the state as JSON.")
@click.option("--format", "view", type=click.Choice([f.value for f in ShowFormat]), default=ShowFormat.NATIVE.value,
              show_default=True, help="The JSON of a saved plan: infraplan's own, or shaped like "
              "`terraform show -json` (needs --json and PLANFILE).")
@color_option
@click.pass_obj
@_handle
def show(obj, planfile, state_path, as_json, view):
    """Show a saved plan, or the resources in state."""
    from infraplan.util.redact import redact
    from infraplan.cli.views.plan import render_plan
    from infraplan.state import StateStore

    if ShowFormat(view) == ShowFormat.TERRAFORM and not (as_json and planfile):
        raise click.UsageError("--format terraform is JSON of a saved plan: give --json and PLANFILE")
    if planfile:
        from infraplan.plan.planfile import load_plan

        saved, _ = load_plan(planfile)
        if as_json and ShowFormat(view) == ShowFormat.TERRAFORM:
            from infraplan.plan.terraform_json import terraform_plan

            emit_json(terraform_plan(saved))
        elif as_json:
            emit_json(saved.to_json(), sort_keys=True)
        else:
            render_plan(saved, obj.console())
        return
    snap = StateStore.open_readonly(_existing_state(state_path)).snapshot()
    if as_json:
        emit_json({"lineage": snap.lineage, "serial": snap.serial, "outputs": snap.outputs,
                   "resources": [redact({"address": r.address, "deposed": r.deposed, "kind": r.kind,
                                         "provider": r.provider, "status": r.status,
                                         "attributes": r.attributes}) for r in snap.resources]})
        return
    if not snap.resources:
        click.echo("The state is empty.")
        return
    from rich.table import Table

    table = Table("address", "status", "endpoint", "model", "revision", box=None)
    for r in snap.resources:
        a = r.attributes or {}
        table.add_row(r.address + (f" (deposed {r.deposed})" if r.deposed else ""), r.status,
                      str(a.get("endpoint") or ""), str(a.get("model") or a.get("source") or ""),
                      str(a.get("model_revision") or a.get("revision") or ""))
    obj.console().print(table)
    click.echo(f"\nstate serial {snap.serial}, lineage {snap.lineage}")


@cli.command()
@click.argument("path", default=".", type=click.Path())
@config_options
@json_option("The graph as {\"nodes\": [...], \"edges\": [[from, to], ...]}.")
@color_option
@_handle
def graph(path, state_path, var_args, var_files, as_json):
    """Print the dependency graph as Graphviz DOT."""
    from infraplan.plan.expand import expand
    from infraplan.graph import build_graph, to_dot

    ws = _workspace(path, state_path, var_args, var_files)
    desired = expand(ws.config)
    g = build_graph({a: d.depends_on for a, d in desired.items()})
    if as_json:
        emit_json({"nodes": sorted(g.nodes), "edges": sorted([list(e) for e in g.edges])})
    else:
        click.echo(to_dot(g), nl=False)


@cli.command()
@click.option("--out", "out", type=click.Path(), help="Write to this file instead of stdout.")
@json_option("Accepted for uniformity: the schema is JSON already.", expose_value=False)
@color_option
def schema(out):
    """Print the JSON Schema of the configuration language."""
    from infraplan.models.schema import schema_json

    text = schema_json()
    if out:
        Path(out).write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command("providers")
@json_option("A list of {name, available, detail}.")
@color_option
@_handle
def providers_cmd(as_json):
    """List installed providers (and why one is unavailable)."""
    from infraplan.errors import ProviderUnavailable
    from infraplan.providers.registry import available_providers, load_provider_class

    rows = []
    for name in sorted(available_providers()):
        try:
            load_provider_class(name)
            rows.append({"name": name, "available": True, "detail": None})
        except ProviderUnavailable as exc:
            rows.append({"name": name, "available": False, "detail": str(exc)})
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']}: {'available' if r['available'] else r['detail']}")


@cli.command()
@state_option
@click.option("--limit", default=20, show_default=True)
@json_option("The history rows as JSON.")
@color_option
@_handle
def history(state_path, limit, as_json):
    """Show past applies and destroys."""
    from infraplan.state import StateStore

    from dataclasses import asdict

    rows = [asdict(h) for h in StateStore.open_readonly(_existing_state(state_path)).history(limit=limit)]
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


@cli.command("force-unlock")
@click.argument("lock_id")
@state_option
@json_option("The broken lock as JSON.")
@color_option
@_handle
def force_unlock(lock_id, state_path, as_json):
    """Break a stale state lock (audited)."""
    from infraplan.state import StateStore

    info = StateStore(_existing_state(state_path)).force_unlock(lock_id)
    if as_json:
        emit_json({"unlocked": True, "lock": info})
    else:
        click.echo(f"Lock {lock_id} broken. The state is unlocked.")


# -- state ------------------------------------------------------------------------------
@cli.group()
def state():
    """Inspect and edit the state."""


@state.command("list")
@state_option
@json_option("A list of {address, deposed, status}.")
@color_option
@_handle
def state_list(state_path, as_json):
    """List resource addresses in state."""
    from infraplan.state import StateStore

    resources = StateStore.open_readonly(_existing_state(state_path)).snapshot().resources
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
@_handle
def state_show(address, state_path):
    """Show one resource's attributes."""
    from infraplan.util.redact import redact
    from infraplan.state import StateStore

    rec = StateStore.open_readonly(_existing_state(state_path)).get(address)
    if rec is None:
        _fail(f"no resource {address} in state")
    emit_json({"address": rec.address, "kind": rec.kind, "provider": rec.provider,
               "status": rec.status, "attributes": redact(rec.attributes),
               "dependencies": rec.dependencies, "created_at": rec.created_at,
               "updated_at": rec.updated_at})


@state.command("rm")
@click.argument("addresses", nargs=-1, required=True, shell_complete=complete_address)
@state_option
@json_option("{\"removed\": [addresses]}.")
@color_option
@_handle
def state_rm(addresses, state_path, as_json):
    """Forget resources (the real servers keep running)."""
    from infraplan.state import StateStore
    from infraplan.util.identity import who

    store = StateStore(_existing_state(state_path))
    with store.lock("state rm", who=who()):
        for a in addresses:
            if store.get(a) is None:
                _fail(f"no resource {a} in state")
            store.remove(a)
            store.audit("state-rm", address=a, who=who())
            if not as_json:
                click.echo(f"Removed {a}")
    if as_json:
        emit_json({"removed": list(addresses)})


@state.command("mv")
@click.argument("src", shell_complete=complete_address)
@click.argument("dst")
@state_option
@json_option("{\"moved\": [addresses moved], \"from\": SRC, \"to\": DST}.")
@color_option
@_handle
def state_mv(src, dst, state_path, as_json):
    """Rename a resource in state (and its replicas)."""
    from infraplan.state import StateStore
    from infraplan.util.identity import who

    store = StateStore(_existing_state(state_path))
    with store.lock("state mv", who=who()):
        moved = store.move(src, dst)
        store.audit("state-mv", address=src, details={"to": dst}, who=who())
    if as_json:
        emit_json({"from": src, "to": dst, "moved": moved})
    else:
        click.echo(f"Moved {src} to {dst}")


from infraplan.cli.commands.drift import cleanup, drift  # noqa: E402
cli.add_command(drift); cli.add_command(cleanup)  # noqa: E702
from infraplan.cli.commands.bench import bench  # noqa: E402
cli.add_command(bench)
from infraplan.cli.commands.plugins import plugins  # noqa: E402
cli.add_command(plugins)


def main() -> None:
    cli(prog_name="infraplan")

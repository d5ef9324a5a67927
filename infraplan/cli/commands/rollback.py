"""`infraplan rollback`: apply an earlier config from the history again."""

from __future__ import annotations

import json
from pathlib import Path

import click

from infraplan.cli.commands.apply import approve
from infraplan.cli.common import fail, handle_errors, notice, resolve_state
from infraplan.cli.options import color_option, compact_warnings, compact_warnings_option, json_option
from infraplan.cli.signals import stops_cleanly
from infraplan.cli.views.progress import finish, progress


@click.command()
@click.argument("path", default=".", type=click.Path())
@click.option("--to", "to_id", type=int, default=None,
              help="History id to go back to (see `infraplan history`); default: the previous applied config.")
@click.option("--state", "state_path", type=click.Path(), default=None,
              help="State file (default: $INFRAPLAN_STATE, else infraplan.db beside the config).")
@click.option("--var", "var_args", multiple=True, metavar="NAME=VALUE",
              help="Values for sensitive variables (they are never stored in history).")
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Concurrent provider calls.")
@click.option("--auto-approve", is_flag=True, help="Skip the interactive approval.")
@json_option("One JSON event per line.")
@color_option
@compact_warnings_option
@click.pass_obj
@handle_errors
@stops_cleanly
def rollback(obj, path, to_id, state_path, var_args, parallelism, auto_approve, as_json):
    """Apply a previous config again, from the history, with the same strategies."""
    import tempfile

    from infraplan.cli.views.plan import render_plan
    from infraplan.plan.planner import PlanOptions
    from infraplan.state import open_store
    from infraplan.workspace import Workspace

    state = resolve_state(state_path, path)
    if not state.exists():
        from infraplan.errors import InfraplanError

        raise InfraplanError(f"no state at {state}")
    with open_store(state, readonly=True) as store:
        history = store.history()
    entry = rollback_target(history, to_id)
    newest = applied_configs(history)[0]
    snap = entry.desired_config
    if snap.get("masked_files"):
        from infraplan.errors import InfraplanError

        raise InfraplanError(
            f"history #{entry.id} cannot be rolled back from the history: its config files "
            f"({', '.join(snap['masked_files'])}) had secrets written in them, which the history does not keep; "
            "check that config out (e.g. from git) and apply it")
    with tempfile.TemporaryDirectory(prefix="infraplan-rollback-") as tmp:
        for name, text in snap["files"].items():
            (Path(tmp) / name).write_text(text)
        stored = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in snap["variables"].items()]
        ws = Workspace(tmp, state_path=state, var_args=stored + list(var_args), notify=notice,
                       config_origin=f"as of history #{entry.id}")
        ws.refuse_if_locked()
        if not as_json:
            click.echo(f"Rolling back to the config of history #{entry.id} ({entry.finished_at}, "
                       f"plan {str(entry.plan_hash)[:12]}).\n")
        the_plan = ws.plan(PlanOptions(parallelism=parallelism))
        if not as_json:
            render_plan(the_plan, obj.console(), compact_warnings=compact_warnings())
        if not the_plan.has_changes:
            return
        if not approve(obj.console(), the_plan, auto_approve, "roll back"):
            fail("rollback cancelled; nothing was changed")
        result = ws.apply(the_plan, parallelism=parallelism, on_event=progress(obj.console(), as_json), operation="rollback")
        finish(obj.console(), ws, result, as_json, the_plan)
        if not as_json:
            click.echo("\n" + config_files_note(path, entry, newest))


def config_files_note(path: str, entry, newest) -> str:
    """What the config files at `path` mean for the next apply, now that history #entry is applied
    again: they are that config, the newer one (`newest`), or something else."""
    from infraplan.config.files import differing_files

    where = "the current directory" if path in (".", "./") else path
    if not differing_files(path, entry.desired_config["files"]):
        before, after = newest.desired_config.get("variables") or {}, entry.desired_config.get("variables") or {}
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if newest.id != entry.id and changed:
            return (f"Note: the config files in {where} are those of history #{entry.id}; the newer version "
                    f"(history #{newest.id}) came from other variable values ({', '.join(changed)}): leave them "
                    "out of the next apply to keep this version.")
        return f"The config files in {where} are those of history #{entry.id}: the next apply keeps this version."
    if newest.id != entry.id and not differing_files(path, newest.desired_config["files"]):
        return (f"Note: the config files in {where} still describe the newer version (history #{newest.id}): the "
                f"next apply rolls it out again; change them to history #{entry.id}'s first.")
    names = ", ".join(differing_files(path, entry.desired_config["files"]))
    return (f"Note: the config files in {where} differ from history #{entry.id} ({names}): the next apply plans "
            "from them, not from this version.")


def applied_configs(history) -> list:
    """The history entries (newest first) whose config was applied in full and stored."""
    return [h for h in history if h.status == "ok" and h.operation in ("apply", "rollback")
            and (h.desired_config or {}).get("files")]


def rollback_target(history, to_id):
    """The history entry to go back to: #to_id, else the newest applied config that differs from the current one."""
    from infraplan.errors import InfraplanError

    applied = applied_configs(history)
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

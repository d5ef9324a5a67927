"""`infraplan drift` and `infraplan cleanup`.

drift exit codes: 0 no drift, 2 drift found, 1 error (a resource that could not
be asked, or the run failed). cleanup: 0 done (or nothing to do), 1 error.
"""

from __future__ import annotations

import sys

import click


from infraplan.cli.common import config_options  # noqa: E402
from infraplan.cli.common import handle_errors as _handle  # noqa: E402
from infraplan.cli.common import open_workspace as _workspace  # noqa: E402
from infraplan.cli.common import resolve_state  # noqa: E402
from infraplan.cli.options import (  # noqa: E402
    color_option, compact_warnings, compact_warnings_option, console, emit_json, json_option, to_json)


def _common(fn):
    fn = config_options(fn)
    fn = click.option("--idle-after", "idle_after", metavar="DURATION",
                      help="Report replicas with no requests for this long as idle (90s, 15m, 2h); "
                           "overrides every fleet's `idle_after`.")(fn)
    fn = click.option("--timeout", "timeout", type=float, default=None, help="Seconds one probe may take [2].")(fn)
    fn = click.option("--parallelism", type=click.IntRange(1, 1000), default=None, help="Replicas checked at once [16].")(fn)
    fn = click.option("--cloud", "clouds", multiple=True, metavar="SPEC",
                      help="Also list tagged instances on a cloud through libcloud (ec2:REGION, gce:ZONE, azure). Opt-in.")(fn)
    return fn


def _settings(ws, idle_after, timeout, parallelism, retries=None, health_generate=None, orphans=None):
    from infraplan.drift import settings_from_config
    from infraplan.models.types import parse_duration

    s = settings_from_config(ws.config)
    updates = {}
    if idle_after:
        updates["idle_after_s"] = parse_duration(idle_after)
    if timeout is not None:
        updates["probe_timeout_s"] = timeout
        # room for every try of /ready (or /health) and /health_generate, then /v1/models and /metrics;
        # a generating probe (/health, /health_generate) takes SGLang's 1 s more
        from infraplan.serving.sglang_client import HEALTH_GENERATION_S

        tries = retries or s.retries
        updates["deadline_s"] = timeout * (2 * tries + 2) + 2 * tries * HEALTH_GENERATION_S
    if parallelism is not None:
        updates["parallelism"] = parallelism
    if retries is not None:
        updates["retries"] = retries
    if health_generate is not None:
        updates["health_generate"] = health_generate
    if orphans is not None:
        updates["orphans"] = orphans
    return s.model_copy(update=updates)


def _finders(ws, clouds):
    if not clouds:
        return []
    from infraplan.drift.orphans import LibcloudFinder, make_driver

    lineage = ws.snapshot().lineage
    return [LibcloudFinder(make_driver(spec), lineage=lineage, name=spec) for spec in clouds]


def _fmt(v) -> str:
    return v if isinstance(v, str) else to_json(v, indent=None)


def render_report(report) -> str:
    """The human report: findings grouped by kind, each with its evidence."""
    from infraplan.drift import KINDS

    counts = report.counts()
    lines = []
    titles = {"missing": "Missing", "changed": "Changed", "unhealthy": "Unhealthy", "orphaned": "Orphaned",
              "idle": "Idle", "error": "Could not be asked (errors)"}
    for kind in KINDS:
        group = [f for f in report.findings if f.kind == kind]
        if not group:
            continue
        lines.append(f"{titles[kind]} ({len(group)}):")
        for f in group:
            lines.append(f"  {f.address}{'  [new]' if f.new else ''}: {f.summary}")
            for e in f.evidence:
                lines.append(f"      {e.field}: expected {_fmt(e.expected)} ({e.against}), seen {_fmt(e.seen)}  <- {e.source}")
            if f.detail:
                lines.append(f"      ({f.detail})")
        lines.append("")
    for s in report.skipped:
        lines.append(f"Skipped {s['address']}: {s['reason']}")
    for n in report.notes:
        lines.append(f"Note: {n}")
    checked = report.checked
    total = sum(counts.values())
    verdict = ("No drift." if total == 0 else
               "Errors: some resources could not be asked." if counts["error"] else "Drift found.")
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "nothing"
    lines.append(f"{verdict} Checked {checked.get('replicas', 0)} replica(s), {checked.get('instances_listed', 0)} "
                 f"listed instance(s) in {report.duration_s:.2f}s: {summary}.")
    if report.alert_targets:
        lines.append(f"Alerting: {', '.join(report.alert_targets)}")
    if report.alerts.get("sent"):
        lines.append(f"Alerts sent: {report.alerts['appeared']} appeared, {report.alerts['cleared']} cleared.")
    if report.alerts.get("error"):
        lines.append(f"Alert error: {report.alerts['error']}")
    return "\n".join(lines)


@click.command()
@click.argument("path", default=".", type=click.Path())
@_common
@json_option("Print the report as JSON (format_version 1.0).")
@color_option
@compact_warnings_option
@click.option("--alert", "alerts", multiple=True, metavar="URL", envvar="INFRAPLAN_ALERT_URLS",
              help="Apprise URL to alert when drift appears or clears (repeatable; also INFRAPLAN_ALERT_URLS).")
@click.option("--retries", type=click.IntRange(1, 10), default=None, help="Tries of a failing health probe [2].")
@click.option("--no-health-generate", is_flag=True, help="Skip /health_generate (it runs a one-token generation).")
@click.option("--no-orphans", is_flag=True, help="Do not list instances for orphans.")
@click.option("--plan-out", type=click.Path(), help="Save the plan that brings the world back to the config.")
@click.option("--history", is_flag=True, help="Show past drift runs (the trend) instead of running one.")
@click.option("--limit", default=20, show_default=True, help="Runs shown by --history.")
@_handle
def drift(path, var_args, var_files, state_path, idle_after, timeout, parallelism, clouds, as_json, alerts, retries,
          no_health_generate, no_orphans, plan_out, history, limit):
    """Find where the real fleet differs from state and config, changing nothing.

    Exit codes: 0 no drift, 2 drift found, 1 error (a resource could not be asked).
    """
    from infraplan.drift import run_drift

    if history:
        return _history(path, state_path, limit, as_json)
    ws = _workspace(path, state_path, var_args, var_files)
    settings = _settings(ws, idle_after, timeout, parallelism, retries,
                         False if no_health_generate else None, False if no_orphans else None)
    urls = list(dict.fromkeys([*alerts, *settings.alerts]))  # --alert plus the config's `alert` blocks
    if urls:
        from infraplan.alerts import check_urls

        check_urls(urls)
    report = run_drift(ws, settings, finders=_finders(ws, clouds), alert_urls=urls)
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(render_report(report))
    if report.alerts.get("error"):
        click.echo(f"Warning: alert not sent: {report.alerts['error']}", err=True)
    if plan_out:
        _save_plan(ws, report, plan_out, parallelism or 10, quiet=as_json)
    sys.exit(report.exit_code)


def _save_plan(ws, report, out: str, parallelism: int, quiet: bool) -> None:
    from infraplan.drift import plan_from_report
    from infraplan.cli.views.plan import render_plan

    from infraplan.plan.planfile import ApplyOptions, apply_hint, public_var_args, save_plan, sensitive_variables

    plan = plan_from_report(ws, report, parallelism)
    kept, withheld = public_var_args(ws.var_args, sensitive_variables(ws.config))
    save_plan(plan, out, ApplyOptions(var_args=kept, var_files=list(ws.var_files), state=ws.state.without_password,
                                      withheld_vars=withheld))
    if not quiet:
        click.echo("")
        render_plan(plan, console(text_only=True), compact_warnings=compact_warnings())
        click.echo(f"\nSaved the plan to {out}. Review it, then run: {apply_hint(out, withheld)}")


def _history(path, state_path, limit, as_json) -> None:
    from dataclasses import asdict

    from infraplan.drift import KINDS
    from infraplan.state import open_store
    from infraplan.errors import InfraplanError

    sp = resolve_state(state_path, path)
    if not sp.exists():
        raise InfraplanError(f"no state at {sp}")
    with open_store(sp, readonly=True) as store:
        runs = store.drift_runs(limit=limit)
    if as_json:
        emit_json([asdict(r) for r in runs])
        return
    if not runs:
        click.echo("No drift runs recorded yet.")
        return
    click.echo(f"{'run':>5}  {'started':20}  {'secs':>6}  exit  " + "  ".join(f"{k:>9}" for k in KINDS) + "  total  trend")
    ordered = list(reversed(runs))  # oldest first, so the trend reads left to right in time
    prev = None
    rows = []
    for r in ordered:
        total = sum(r.counts.get(k, 0) for k in KINDS)
        trend = "" if prev is None else ("=" if total == prev else f"{total - prev:+d}")
        rows.append(f"{r.id:>5}  {r.started_at:20}  {r.duration_s or 0:>6.2f}  {r.exit_code:>4}  "
                    + "  ".join(f"{r.counts.get(k, 0):>9}" for k in KINDS) + f"  {total:>5}  {trend}")
        prev = total
    for line in reversed(rows):  # newest first
        click.echo(line)


@click.command()
@click.argument("path", default=".", type=click.Path())
@_common
@click.option("--include-idle", is_flag=True, help="Also destroy idle replicas (needs --idle-after or a fleet's `idle_after`).")
@click.option("--auto-approve", is_flag=True, help="Skip the interactive approval.")
@json_option("Print what was planned and removed as JSON.")
@color_option
@_handle
def cleanup(path, var_args, var_files, state_path, idle_after, timeout, parallelism, clouds, include_idle,
            auto_approve, as_json):
    """Remove orphaned instances (and, with --include-idle, idle replicas), with approval; audited."""
    from infraplan.drift import execute_cleanup, plan_cleanup, watches_idle

    ws = _workspace(path, state_path, var_args, var_files)
    settings = _settings(ws, idle_after, timeout, parallelism)
    if include_idle and not watches_idle(settings):
        from infraplan.errors import InfraplanError

        raise InfraplanError("--include-idle needs an idle window: pass --idle-after DURATION or set a fleet's idle_after")
    todo = plan_cleanup(ws, settings, finders=_finders(ws, clouds), include_idle=include_idle)
    if not as_json:
        click.echo(todo.render())
    if not todo.items:
        if as_json:
            emit_json(todo.to_json())
        return
    if not auto_approve:
        if not sys.stdin.isatty():
            from infraplan.errors import InfraplanError

            raise InfraplanError("refusing to clean up without approval: no terminal to ask; pass --auto-approve")
        answer = click.prompt("\nDo you want to remove these? Only 'yes' will be accepted.\n  Enter a value",
                              default="", show_default=False)
        if answer.strip() != "yes":
            click.echo("Error: cleanup cancelled; nothing was removed", err=True)
            sys.exit(1)
    done = execute_cleanup(ws, todo)
    if as_json:
        emit_json(done.to_json())
    else:
        for item in done.items:
            status = "removed" if item.removed else f"FAILED: {item.error}"
            click.echo(f"{item.address}: {status}")
    if any(not i.removed for i in done.items):
        sys.exit(1)

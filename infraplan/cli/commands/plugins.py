"""`infraplan plugins`: give providers whose SDK clashes with infraplan a virtualenv of their own."""

from __future__ import annotations

import click

from infraplan.cli.common import handle_errors as _handle
from infraplan.cli.options import color_option, emit_json, json_option


@click.group()
def plugins():
    """Provider plugins that run in their own process and virtualenv (e.g. skypilot)."""


@plugins.command("install")
@click.argument("name")
@click.option("--python", "python", metavar="PATH", help="Interpreter to create the virtualenv with [this one].")
@click.option("--upgrade", is_flag=True, help="Upgrade the plugin's packages within its pins.")
@json_option("Print the result as JSON.")
@color_option
@_handle
def install_cmd(name, python, upgrade, as_json):
    """Create NAME's plugin virtualenv, install its SDK there and check that it serves."""
    from infraplan.providers.plugin.host import install, plugin_dir
    from infraplan.providers.registry import load_provider_class

    cls = load_provider_class(name)
    echo = (lambda _m: None) if as_json else (lambda m: click.echo(m, err=True))
    info = install(name, cls, python=python, upgrade=upgrade, echo=echo)
    info["path"] = str(plugin_dir(name))
    if as_json:
        emit_json(info)
    else:
        versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        click.echo(f"plugin {name} ready: {versions} (Python {info['python']}, {info['path']})")


@plugins.command("list")
@json_option("Print as JSON.")
@color_option
@_handle
def list_cmd(as_json):
    """Providers, where each runs (in-process or plugin) and what its plugin has installed."""
    from infraplan.providers.plugin.host import Placement, placement, plugin_dir, plugin_python, requirements_of
    from infraplan.providers.registry import available_providers, load_provider_class

    rows = []
    for name in sorted(available_providers()):
        try:
            cls = load_provider_class(name)
        except Exception as exc:  # noqa: BLE001 - list what loads, name what does not
            rows.append({"name": name, "runs": "unavailable", "detail": str(exc)})
            continue
        reqs = requirements_of(cls)
        installed = plugin_python(name) is not None
        where = placement(cls, name)
        rows.append({"name": name, "runs": where.value, "plugin_requirements": reqs, "plugin_installed": installed,
                     "plugin_path": str(plugin_dir(name)) if reqs else None})
        if where is Placement.NOT_INSTALLED:
            rows[-1]["detail"] = where.describe(name)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        line = f"{r['name']:<10} {r.get('detail') or r['runs']}"
        if r.get("plugin_requirements") and r["runs"] != Placement.NOT_INSTALLED:
            line += (f"  plugin: {'installed at ' + r['plugin_path'] if r['plugin_installed'] else 'not installed'}"
                     f" ({', '.join(r['plugin_requirements'])})")
        click.echo(line)


def _age(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _mode() -> dict:
    """Whether plugin workers are kept warm here, and why (for `plugins status`)."""
    import os

    from infraplan.providers.plugin import warm

    keep = warm.keep_warm()
    if os.environ.get(warm.KEEP_ENV, "").strip():
        why = f"{warm.KEEP_ENV}={os.environ[warm.KEEP_ENV].strip()}"
    elif not warm.supported():
        why = "warm workers need Linux"
    else:
        why = "CI" if warm.in_ci() else "default"
    return {"keep_warm": keep, "why": why, "idle_timeout_s": warm.idle_timeout_s()}


@plugins.command("status")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@json_option("Print as JSON.")
@color_option
@_handle
def status_cmd(names, as_json):
    """Your warm plugin workers (all plugins, or those NAMEd): pid, age, idle time, sessions.

    A warm worker serves the plugin's calls for many commands over a private socket and stops
    after INFRAPLAN_PLUGIN_IDLE seconds without one; INFRAPLAN_PLUGIN_KEEP=0 starts a worker per command."""
    from infraplan.providers.plugin import warm

    mode = _mode()
    rows = [{"plugin": e.plugin, "socket": str(e.socket), "running": e.status is not None, **(e.status or {})}
            for e in warm.workers(names or None)]
    if as_json:
        emit_json({**mode, "workers": rows})
        return
    kept = f"warm, stopped after {_age(mode['idle_timeout_s'])} idle" if mode["keep_warm"] else "one per command"
    click.echo(f"plugin workers: {kept} ({mode['why']})")
    if not rows:
        click.echo("no warm plugin workers running")
    for r in rows:
        if not r["running"]:
            click.echo(f"{r['plugin']:<10} not running: stale socket {r['socket']} (replaced on next use)")
            continue
        state = "stopping" if r["stopping"] else f"idle {_age(r['idle_s'])} of {_age(r['idle_timeout_s'])}"
        if r["open_sessions"]:
            state = f"busy ({r['open_sessions']} open session{'s' if r['open_sessions'] != 1 else ''})"
        click.echo(f"{r['plugin']:<10} pid {r['pid']}  up {_age(r['uptime_s'])}  {state}  "
                   f"{r['sessions_served']} session{'s' if r['sessions_served'] != 1 else ''} served  {r['socket']}")


@plugins.command("stop")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--wait", "wait_s", type=float, default=10.0, show_default=True, metavar="SECONDS",
              help="How long to wait for open sessions to end.")
@json_option("Print as JSON.")
@color_option
@_handle
def stop_cmd(names, wait_s, as_json):
    """Stop your warm plugin workers (all plugins, or those NAMEd); each finishes its open sessions first."""
    from infraplan.providers.plugin import warm

    done = [{"plugin": e.plugin, "socket": str(e.socket), "pid": (e.status or {}).get("pid"), "result": result}
            for e, result in warm.stop(names or None, wait_s=wait_s)]
    if as_json:
        emit_json(done)
        return
    if not done:
        click.echo("no warm plugin workers running")
    for d in done:
        if d["result"] == "stale":
            click.echo(f"{d['plugin']:<10} stale socket removed: {d['socket']}")
        elif d["result"] == "stopped":
            click.echo(f"{d['plugin']:<10} pid {d['pid']} stopped")
        else:
            click.echo(f"{d['plugin']:<10} pid {d['pid']} stopping: it ends when its open sessions do")

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

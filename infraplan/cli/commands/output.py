"""`infraplan output`: outputs from the state."""

from __future__ import annotations

import click

from infraplan.cli.common import existing_state, fail, handle_errors, state_option
from infraplan.cli.options import color_option, emit_json, json_option, to_json


@click.command()
@click.argument("name", required=False)
@state_option
@json_option("All outputs as one JSON object.")
@color_option
@click.option("--raw", is_flag=True,
              help="Print one output's value as it is: a string without quotes, a sensitive output in clear "
                   "(worked out again from the config, since the state keeps no secret).")
@click.option("--config", "config_path", type=click.Path(), default=".", show_default=True,
              help="The config directory or file, for --raw of a sensitive output.")
@click.option("--var", "var_args", multiple=True, metavar="NAME=VALUE",
              help="A variable, for --raw of a sensitive output.")
@click.option("--var-file", "var_files", multiple=True, type=click.Path(),
              help="A file of variable values, for --raw of a sensitive output.")
@handle_errors
def output(name, state_path, as_json, raw, config_path, var_args, var_files):
    """Show outputs from the state. Sensitive ones read "(sensitive value)" unless asked for
    by name with --raw, as in Terraform."""
    from infraplan.state import open_store
    from infraplan.util.redact import redact_outputs

    location = existing_state(state_path)
    with open_store(location, readonly=True) as store:
        snap = store.snapshot()
    shown = redact_outputs(snap.outputs, snap.sensitive_outputs)
    if raw and not name:
        fail("--raw needs an output NAME (infraplan output NAME --raw)")
    if name:
        if name not in snap.outputs:
            fail(f"no output named {name!r} (have: {', '.join(sorted(snap.outputs)) or 'none'})")
        v = shown[name]
        if raw and name in snap.sensitive_outputs:
            v = _sensitive_value(name, location, config_path, var_args, var_files)
        if raw and isinstance(v, str):
            click.echo(v)
        else:
            emit_json(v, indent=None)
        return
    if as_json:
        emit_json(shown)
    else:
        for k, v in sorted(shown.items()):
            click.echo(f"{k} = {to_json(v, indent=None)}")


def _sensitive_value(name, state_path, config_path, var_args, var_files):
    """A sensitive output worked out again from the config and its variables over the state."""
    from pathlib import Path

    from infraplan.state import open_store
    from infraplan.workspace import Workspace

    ws = Workspace(config_path, state_path=state_path, var_args=var_args, var_files=var_files)
    if not Path(config_path).exists() or name not in ws.config.outputs:
        fail(f"output {name!r} is sensitive and the state keeps no secret: run this where its config is "
             f"(or pass --config PATH) with its sensitive variables (--var)")
    with open_store(ws.state, readonly=True, secrets=ws.config.sensitive_values) as store:
        return ws.compute_outputs(store)[name]

"""`infraplan validate`: check the configuration, every error at once."""

from __future__ import annotations

import os
import sys

import click

from infraplan.cli.common import config_options, handle_errors
from infraplan.cli.options import color_option, emit_json, json_option


@click.command()
@click.argument("path", default=".", type=click.Path())
@config_options
@json_option("Machine-readable diagnostics.")
@color_option
@handle_errors
def validate(path, state_path, var_args, var_files, as_json):
    """Check the configuration; report every error at once."""
    from infraplan.workspace import validate as validate_workspace

    config, diags = validate_workspace(path, var_args=list(var_args), var_files=list(var_files), env=os.environ)
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

"""What every command shares: error handling, config options, opening a workspace.

Library code raises `InfraplanError`s; commands turn them into one-line messages
(config diagnostics first, each with `file:line:col`) and an exit code.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click


def fail(message: str, code: int = 1) -> None:
    """Print `Error: message` to stderr and exit."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn):
    """Run a command body; user-facing errors become a located one-line message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from infraplan.errors import ConfigError, InfraplanError, PlanError

        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            for d in exc.diagnostics:
                click.echo(d.one_line(), err=True)
            n = sum(1 for d in exc.diagnostics if d.severity == "error")
            fail(f"configuration has {n} error{'s' if n != 1 else ''}; nothing was planned or applied")
        except PlanError as exc:
            for d in exc.diagnostics[1:]:
                if d.severity == "error":
                    click.echo(d.one_line(), err=True)
            fail(exc.one_line())
        except InfraplanError as exc:
            fail(exc.one_line(), exc.exit_code)

    return wrapper


def config_options(fn):
    """--var, --var-file and --state."""
    fn = click.option("--var", "var_args", multiple=True, metavar="NAME=VALUE", help="Set a variable.")(fn)
    fn = click.option("--var-file", "var_files", multiple=True, type=click.Path(),
                      help="A YAML/JSON file of variable values.")(fn)
    fn = click.option("--state", "state_path", type=click.Path(), default=None,
                      help="State file (default: infraplan.db beside the config).")(fn)
    return fn


def open_workspace(path, state_path, var_args, var_files):
    """A Workspace for an existing config path (a clear error when it is missing)."""
    from infraplan.workspace import Workspace

    if not Path(path).exists():
        from infraplan.diagnostics import Diagnostic
        from infraplan.errors import ConfigError

        raise ConfigError([Diagnostic(f"configuration path {path} does not exist")])
    return Workspace(path, state_path=state_path, var_args=var_args, var_files=var_files)

"""What every command shares: error handling, config options, opening a workspace.

Library code raises `InfraplanError`s; commands turn them into one-line messages
(config diagnostics first, each with `file:line:col`) and an exit code.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from infraplan.state.api import StateLocation


def fail(message: str, code: int = 1, diagnostics: list | None = None, *, quiet: bool = False) -> None:
    """Print `Error: message` to stderr (not when `quiet`: it was said already) and exit; with
    --json also `{"error", "exit_code"}` on stdout."""
    from infraplan.cli.options import emit_json, json_requested
    from infraplan.diagnostics import printable

    if not quiet:
        click.echo(f"Error: {printable(message)}", err=True)
    if json_requested():
        body: dict = {"error": message, "exit_code": code}
        if diagnostics:
            body["diagnostics"] = diagnostics
        emit_json(body)
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
            message = f"configuration has {n} error{'s' if n != 1 else ''}; nothing was planned or applied"
            # one error is said once, on its own located line; several get a count after them
            fail(message, diagnostics=[d.to_json() for d in exc.diagnostics], quiet=n == 1)
        except PlanError as exc:
            said = [d.one_line() for d in exc.diagnostics if d.severity == "error"]
            for line in said:
                click.echo(line, err=True)
            fail(exc.one_line(), quiet=exc.one_line() in said)  # the first error is the message: said once
        except InfraplanError as exc:
            fail(exc.one_line(), exc.exit_code)

    return wrapper


def config_options(fn):
    """--var, --var-file and --state (see `resolve_state`)."""
    fn = click.option("--var", "var_args", multiple=True, metavar="NAME=VALUE", help="Set a variable.")(fn)
    fn = click.option("--var-file", "var_files", multiple=True, type=click.Path(),
                      help="A YAML/JSON file of variable values.")(fn)
    fn = click.option("--state", "state_path", type=click.Path(), default=None,
                      help=f"State file or postgresql:// URL (default: ${STATE_ENV}, else the config's "
                      "backend block, else infraplan.db beside the config).")(fn)
    return fn


def open_workspace(path, state_path, var_args, var_files):
    """A Workspace for an existing config path (a clear error when it is missing)."""
    from infraplan.workspace import Workspace

    if not Path(path).exists():
        from infraplan.diagnostics import Diagnostic
        from infraplan.errors import ConfigError

        raise ConfigError([Diagnostic(f"configuration path {path} does not exist")])
    return Workspace(path, state_path=explicit_state(state_path), var_args=var_args, var_files=var_files,
                     notify=notice)


def notice(message: str) -> None:
    """A one-line notice on stderr (a broken stale lock, an apply in progress)."""
    click.echo(message, err=True)


STATE_ENV = "INFRAPLAN_STATE"
LOG_ENV = "INFRAPLAN_LOG"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogLevel(str, Enum):
    """The values INFRAPLAN_LOG accepts."""

    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"

    @property
    def level(self) -> int:
        return {LogLevel.DEBUG: logging.DEBUG, LogLevel.INFO: logging.INFO, LogLevel.WARN: logging.WARNING}[self]


def explicit_state(state: str | Path | StateLocation | None, *, recorded: str | None = None) -> StateLocation | None:
    """The state named for this run: --state, else $INFRAPLAN_STATE, else `recorded` (the state a saved
    plan was made against); None when none is named (the config's `backend:` block or the default decides)."""
    from infraplan.state.api import StateLocation

    for given in (state, os.environ.get(STATE_ENV), recorded):
        if given:
            return StateLocation.parse(given)
    return None


def resolve_state(state: str | Path | None, config_path: str | Path | None = None, *,
                  recorded: str | None = None) -> StateLocation:
    """The one state rule: --state, else $INFRAPLAN_STATE, else (a saved plan's state,) else the config's
    `backend:` block, else infraplan.db beside the config.

    Commands without a config PATH argument pass `config_path=None`: the config in the current
    directory is read for its `backend:` block, and the default is ./infraplan.db.
    """
    from infraplan.workspace import locate_state

    return locate_state(Path(config_path) if config_path is not None else Path("."),
                        explicit_state(state, recorded=recorded))


def existing_state(state: str | Path | None) -> StateLocation:
    """The state of a command without a config PATH; an error (nothing created) when no file is there."""
    from infraplan.errors import InfraplanError

    location = resolve_state(state)
    if not location.exists():
        raise InfraplanError(f"no state at {location}")
    return location


def authorize(action: str, addresses: list[str], state_path) -> None:
    """The access policy (beside the state) on a command without a config: state edits,
    force-unlock. Raises AccessDenied, audited, before the lock is taken."""
    from infraplan.policy.access import AccessAction, enforce
    from infraplan.util.identity import who

    from infraplan.state.api import StateLocation

    location = StateLocation.parse(state_path)
    # a policy sits beside a state file; beside the config here for a database
    folder = location.path.parent if location.is_file else Path(".")
    enforce(AccessAction(action), addresses, actor=who(), folders=[folder], state_path=location)


def state_option(fn):
    """--state for commands without a config PATH argument."""
    return click.option("--state", "state_path", type=click.Path(), default=None,
                        help=f"State file or postgresql:// URL (default: ${STATE_ENV}, else the backend block "
                        "of the config here, else ./infraplan.db).")(fn)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record (click's test runner swaps it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


_LOGGERS = ("infraplan", "infraplan_providers", "psycopg")  # psycopg: the state pool (PostgreSQL)
_handler = _StderrHandler()
_handler.setFormatter(logging.Formatter(LOG_FORMAT))


def configure_logging(value: str | None) -> None:
    """Switch infraplan's stdlib logging to stderr at INFRAPLAN_LOG's level (off when unset).

    Idempotent: each call replaces what an earlier one set (in-process runs share the loggers).
    """
    from infraplan.errors import InfraplanError

    level = None
    if value:
        try:
            level = LogLevel(value.strip().lower()).level
        except ValueError:
            raise InfraplanError(f"{LOG_ENV}={value!r} is not one of "
                                 f"{', '.join(v.value for v in LogLevel)}") from None
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.removeHandler(_handler)
        logger.setLevel(logging.NOTSET)
        if level is not None:
            logger.addHandler(_handler)
            logger.setLevel(level)


class UsageExitsOne:
    """Mixin for click commands: a usage error exits 1 (click's own code is 2, kept for "changes")."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)  # type: ignore[misc]
        except click.UsageError as exc:
            raise OneLineUsageError.of(exc) from None


class OneLineUsageError(click.UsageError):
    """A usage error said in one line, as every error is (click's own takes four), exit 1."""

    exit_code = 1

    @classmethod
    def of(cls, exc: click.UsageError) -> OneLineUsageError:
        return exc if isinstance(exc, cls) else cls(exc.format_message(), exc.ctx)

    def show(self, file=None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message()}{hint}", file=file, err=file is None)


class Cli(UsageExitsOne, click.Group):
    """The root group: click's usage errors exit 1, keeping 2 for "changes" and "drift found";
    Terraform's single-dash long options (``-out=FILE``) are read as ``--out=FILE``."""

    def parse_args(self, ctx, args):
        from infraplan.cli.tf_flags import long_spellings

        return super().parse_args(ctx, long_spellings(self, list(args), list(ctx.help_option_names)))

    def invoke(self, ctx):
        # subcommands (and nested groups) parse their arguments inside the root's invoke
        typed = list(ctx.args)  # the subcommand's words (click empties ctx.args as it goes)
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            options = typed[:typed.index("--")] if "--" in typed else typed
            if "--json" in options:  # the flag was typed but never parsed: answer in JSON all the same
                from infraplan.cli.options import emit_json

                emit_json({"error": exc.format_message().splitlines()[0], "exit_code": 1})
            raise OneLineUsageError.of(exc) from None

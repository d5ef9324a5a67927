"""The options every printing command shares (--json, --no-color; --compact-warnings where a
plan is shown), the one JSON writer, and the console they colour.

Both flags are recorded in `click.Context.meta`, which nested contexts share, so the root's
`infraplan --no-color plan` and the command's `infraplan plan --no-color` mean the same.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from enum import Enum
from pathlib import Path
from typing import Any

import click

_JSON_KEY = "infraplan.json"
_NO_COLOR_KEY = "infraplan.no_color"
_COMPACT_KEY = "infraplan.compact_warnings"


def _encode(value: Any) -> Any:
    """What the stdlib encoder cannot write: datetimes, enums, paths, dataclasses, sets."""
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def to_json(value: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """`value` as JSON text (no trailing newline), through the CLI's one encoder."""
    return json.dumps(value, indent=indent, sort_keys=sort_keys, default=_encode)


def emit_json(value: Any, *, indent: int | None = 2, sort_keys: bool = False, err: bool = False) -> None:
    """Write `value` as JSON with a trailing newline (stdout unless `err`)."""
    click.echo(to_json(value, indent=indent, sort_keys=sort_keys), err=err)


def _meta() -> dict:
    ctx = click.get_current_context(silent=True)
    return ctx.meta if ctx is not None else {}


def json_requested() -> bool:
    """Whether the running command was given --json."""
    return bool(_meta().get(_JSON_KEY))


def color_disabled() -> bool:
    """--no-color on the root or the command, or NO_COLOR set (to anything but empty)."""
    return bool(_meta().get(_NO_COLOR_KEY)) or bool(os.environ.get("NO_COLOR"))


def _remember(key: str):
    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.meta[key] = True
        return value

    return callback


def json_option(help: str = "Machine-readable output (JSON).", *, expose_value: bool = True):
    """--json (parameter `as_json`); with it, an error is also printed as `{"error": ..., "exit_code": N}`."""
    return click.option("--json", "as_json", is_flag=True, help=help, expose_value=expose_value,
                        callback=_remember(_JSON_KEY))


def color_option(fn):
    """--no-color: no ANSI colour (also NO_COLOR=1; off anyway when not a TTY)."""
    return click.option("--no-color", "no_color", is_flag=True, expose_value=False, callback=_remember(_NO_COLOR_KEY),
                        help="No colour (also NO_COLOR=1; off anyway when not a TTY).")(fn)


def compact_warnings_option(fn):
    """--compact-warnings (as Terraform's): warnings as their summaries, one line each."""
    return click.option("--compact-warnings", is_flag=True, expose_value=False, callback=_remember(_COMPACT_KEY),
                        help="Show warnings in a compact form: one line each, the summary only.")(fn)


def compact_warnings() -> bool:
    """Whether the running command was given --compact-warnings."""
    return bool(_meta().get(_COMPACT_KEY))


def console(*, stderr: bool = False, text_only: bool = False):
    """The console commands print through: colour only on a TTY and never when disabled."""
    from infraplan.cli.views.plan import make_console

    return make_console(no_color=color_disabled(), stderr=stderr, text_only=text_only)

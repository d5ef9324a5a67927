"""Value types of the config language that appear in many blocks.

`Duration` is the one way a span of time is written anywhere in a config
(`idle_after`, `rollout.rollback_window`, ...) or on the command line
(`--idle-after`, `bench --duration`): a positive number with a unit, checked when
the config is loaded so a bad value is reported at its `file:line:col`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

from infraplan.util.durations import DurationError, parse_duration  # noqa: F401 - part of this module API


def _check(value: str) -> str:
    parse_duration(value)
    return value


#: A duration as written by the user (kept as written, so plans show `10m`), checked at load.
Duration = Annotated[
    str,
    AfterValidator(_check),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(\.\d+)?[smhdw])+$",
                    "description": "A positive duration such as `90s`, `15m`, `2h`, `1d` or `1h30m`."}),
]

"""Value types of the config language that appear in many blocks.

`Duration` is the one way a span of time is written anywhere in a config
(`idle_after`, `rollout.rollback_window`, ...) or on the command line
(`--idle-after`, `bench --duration`): a positive number with a unit, checked when
the config is loaded so a bad value is reported at its `file:line:col`.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_GRAMMAR = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_MESSAGE = "must be a positive duration such as `90s`, `30m`, `2h`, `1d` or `1h30m`"


class DurationError(ValueError):
    """A value that is not a duration."""


def parse_duration(value: str | int | float) -> float:
    """``"90s"`` / ``"15m"`` / ``"2h"`` / ``"1d"`` / ``"1h30m"`` -> seconds (> 0).

    A number (int or float, not a string) means seconds. Raises `DurationError`
    (a `ValueError`) with one message for every bad value.
    """
    if isinstance(value, bool):
        raise DurationError(_MESSAGE)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        if len(text) > 64 or not _GRAMMAR.fullmatch(text):
            raise DurationError(_MESSAGE)
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    if not 0 < seconds < float("inf"):
        raise DurationError(_MESSAGE)
    return seconds


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

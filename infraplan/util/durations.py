"""Durations as the config language writes them (`90s`, `15m`, `1h30m`), parsed to seconds.

The one parser: `infraplan.models.types.Duration` checks config values with it, and the
layers below the models (the smg flags in `infraplan.serving`) turn them into seconds.
"""

from __future__ import annotations

import re

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

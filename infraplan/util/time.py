"""The one UTC-time format of infraplan: ISO 8601 with a ``Z``, to the second.

History, audit, lock, drift and plan timestamps all use it, so they sort and compare as text.
"""

from __future__ import annotations

import datetime as dt
import time


def utc_now() -> str:
    """Now as ``2026-11-23T13:00:00Z``."""
    return iso_utc(time.time())


def iso_utc(ts: float) -> str:
    """A POSIX timestamp as ``2026-11-23T13:00:00Z``."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Project state: resources, outputs, history, audit log and the state lock, in an SQLite file
(the default) or a PostgreSQL database; `open_store` picks by location (see `state.api`)."""

import sys as _sys


def _import_sqlite_utils_without_dataframes() -> None:
    """Import sqlite-utils without pandas/numpy.

    sqlite-utils imports pandas and numpy when they are installed (the `skypilot` extra
    brings them) only to infer column types from their scalars, which infraplan never
    asks it to do; that import alone costs ~0.3 s on every command. Hide them while
    sqlite-utils loads, then let anything else import them normally.
    """
    if "sqlite_utils" in _sys.modules:
        return
    hidden = [m for m in ("pandas", "numpy") if m not in _sys.modules]
    for m in hidden:
        _sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` raise ImportError
    try:
        import sqlite_utils  # noqa: F401
    finally:
        for m in hidden:
            if _sys.modules.get(m) is None:
                del _sys.modules[m]


# sqlite-utils is imported when a state file is opened (infraplan.state.migrations):
# a plan against a missing state file never pays for it

from infraplan.state.lock import LockInfo, default_who, utc_now
from infraplan.state.api import BackendKind, StateLocation, Store
from infraplan.state.backends import open_store
from infraplan.state.records import AuditEntry, HistoryEntry, ResourceRecord, StateSnapshot
from infraplan.state.store import StateStore

# the PostgreSQL store (infraplan.state.postgres) is imported when a postgresql:// state is opened

__all__ = [
    "AuditEntry",
    "BackendKind",
    "HistoryEntry",
    "LockInfo",
    "ResourceRecord",
    "StateLocation",
    "StateSnapshot",
    "StateStore",
    "Store",
    "default_who",
    "open_store",
    "utc_now",
]

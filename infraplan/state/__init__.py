"""Project state: resources, outputs, history, audit log and the state lock, in SQLite."""

from infraplan.state.lock import LockInfo, default_who, utc_now
from infraplan.state.store import (
    AuditEntry,
    HistoryEntry,
    ResourceRecord,
    StateSnapshot,
    StateStore,
)

__all__ = [
    "AuditEntry",
    "HistoryEntry",
    "LockInfo",
    "ResourceRecord",
    "StateSnapshot",
    "StateStore",
    "default_who",
    "utc_now",
]

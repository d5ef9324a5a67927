"""The state lock: at most one row in the `locks` table.

A run that changes state holds the lock for its whole duration. Acquiring is
atomic (BEGIN IMMEDIATE, check, insert) and never waits for the holder: a held
lock is reported at once, naming who holds it. A lock whose process died is
only reported as such, never broken automatically; `force_unlock` does that,
and leaves an audit event behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any


from infraplan.errors import LockError
from infraplan.util.identity import hostname, who as default_who
from infraplan.util.time import utc_now



@dataclass(frozen=True)
class LockInfo:
    """Who holds the state lock, and for what."""

    id: str
    who: str
    pid: int
    host: str
    operation: str
    since: str

    def as_dict(self) -> dict:
        return asdict(self)

    def holder_gone(self) -> bool:
        """True only if the holder ran on this host and its pid no longer exists."""
        import psutil  # only when a lock is in the way

        return self.host == hostname() and not psutil.pid_exists(self.pid)


_COLUMNS = "id, who, pid, host, operation, since"


def _row_to_info(row: tuple) -> LockInfo:
    return LockInfo(*row)


def held_message(info: LockInfo) -> str:
    """The LockError message for a lock held by `info`."""
    msg = (
        f"state is locked by {info.who} (pid {info.pid} on {info.host}) for "
        f"{info.operation} since {info.since}; lock ID {info.id}"
    )
    if info.holder_gone():
        msg += f"; pid {info.pid} is no longer running on this host"
    return msg + f"; if that run is gone, run: infraplan force-unlock {info.id}"


def current(store: Any) -> LockInfo | None:
    """The lock currently held, if any."""
    row = store._read_one(f"SELECT {_COLUMNS} FROM locks WHERE slot = 1")
    return _row_to_info(row) if row else None


def acquire(store: Any, operation: str, *, who: str | None = None) -> LockInfo:
    """Take the lock or raise LockError naming the holder, without waiting."""
    info = LockInfo(
        id=uuid.uuid4().hex,
        who=who or default_who(),
        pid=os.getpid(),
        host=hostname(),
        operation=operation,
        since=utc_now(),
    )
    with store._transaction(bump_serial=False) as conn:
        row = conn.execute(f"SELECT {_COLUMNS} FROM locks WHERE slot = 1").fetchone()
        if row is not None:
            holder = _row_to_info(row)
            raise LockError(held_message(holder), holder=holder.as_dict())
        store.db.table("locks").insert({"slot": 1, **info.as_dict()})
    return info


def release(store: Any, info: LockInfo) -> bool:
    """Drop the lock if it is still `info`'s (it may have been force-unlocked)."""
    with store._transaction(bump_serial=False) as conn:
        return conn.execute("DELETE FROM locks WHERE id = ?", [info.id]).rowcount > 0


@contextlib.contextmanager
def hold(store: Any, operation: str, *, who: str | None = None) -> Iterator[LockInfo]:
    """Context manager: hold the lock for the duration of the block."""
    info = acquire(store, operation, who=who)
    try:
        yield info
    finally:
        release(store, info)


def force_unlock(store: Any, lock_id: str, *, who: str | None = None) -> LockInfo:
    """Remove the lock if its id is `lock_id`; audit it. Returns the broken lock."""
    with store._transaction(bump_serial=False) as conn:
        row = conn.execute(f"SELECT {_COLUMNS} FROM locks WHERE slot = 1").fetchone()
        if row is None:
            raise LockError(f"state is not locked; nothing to force-unlock (lock ID {lock_id})")
        info = _row_to_info(row)
        if info.id != lock_id:
            raise LockError(
                f"lock ID {lock_id} does not match the current lock {info.id} "
                f"held by {info.who} (pid {info.pid} on {info.host}) for {info.operation}",
                holder=info.as_dict(),
            )
        conn.execute("DELETE FROM locks WHERE id = ?", [lock_id])
        store.db.table("audit").insert(
            {
                "at": utc_now(),
                "event": "force-unlock",
                "address": None,
                "details": json.dumps(info.as_dict(), sort_keys=True),
                "who": who or default_who(),
            }
        )
    return info

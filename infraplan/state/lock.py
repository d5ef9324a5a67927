"""The state lock: at most one row in the `locks` table.

A run that changes state holds the lock for its whole duration. Acquiring is
atomic (BEGIN IMMEDIATE, check, insert) and never waits for the holder: a held
lock is reported at once, naming who holds it. A lock whose holder ran on this
host and is gone (its pid no longer exists, or now belongs to a process started
at another time) is broken by the next acquirer, audited as ``lock-broken``. A
history row left ``running`` (its run ended without closing it) is closed as
``interrupted`` by the next acquirer. A lock held from another host is never
broken automatically: `force_unlock` does that, and leaves an audit event behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


from infraplan.errors import LockError
from infraplan.util.identity import hostname, who as default_who
from infraplan.util.time import utc_now

#: seconds two readings of one process's start time may differ by (psutil rounds them)
START_TIME_SLACK_S = 1.0
#: the history status of a run that holds the lock; closed as "interrupted" when its lock is broken
RUNNING = "running"


class HolderState(StrEnum):
    """What this host can tell about a lock's holder."""

    ALIVE = "alive"  # its process runs on this host
    GONE = "gone"  # it ran on this host and its process is gone (or the pid was reused)
    REMOTE = "remote"  # it runs on another host: cannot tell


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), or None when that cannot be read."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


@dataclass(frozen=True)
class LockInfo:
    """Who holds the state lock, and for what."""

    id: str
    who: str
    pid: int
    host: str
    operation: str
    since: str
    pid_started: float | None = None  # the holder's process start time (None in older state files)

    def as_dict(self) -> dict:
        return asdict(self)

    def holder_state(self) -> HolderState:
        """Whether the holder still runs: a pid alone is not proof, as pids are reused."""
        import psutil  # only when a lock is in the way

        if self.host != hostname():
            return HolderState.REMOTE
        try:
            started = psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            return HolderState.GONE
        except psutil.Error:  # exists, but not ours to inspect
            return HolderState.ALIVE
        if self.pid_started is not None and abs(started - self.pid_started) > START_TIME_SLACK_S:
            return HolderState.GONE  # another program got the pid
        return HolderState.ALIVE

    def holder_gone(self) -> bool:
        """True only if the holder ran on this host and its process no longer exists."""
        return self.holder_state() is HolderState.GONE

    def describe(self) -> str:
        """``who (pid N on host) for OPERATION since T``."""
        return f"{self.who} (pid {self.pid} on {self.host}) for {self.operation} since {self.since}"


_COLUMNS = "id, who, pid, host, operation, since"


def _select(conn: sqlite3.Connection | None) -> str:
    """The lock row's columns (older state files have no pid_started until they are written)."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(locks)")} if conn is not None else set()
    return _COLUMNS + (", pid_started" if "pid_started" in cols else "")


def _row_to_info(row: tuple) -> LockInfo:
    return LockInfo(*row)


def held_message(info: LockInfo) -> str:
    """The LockError message for a lock held by `info`."""
    msg = f"state is locked by {info.describe()}; lock ID {info.id}"
    if info.holder_gone():
        msg += f"; pid {info.pid} is no longer running on this host"
    return msg + f"; if that run is gone, run: infraplan force-unlock {info.id}"


def broken_notice(info: LockInfo) -> str:
    """The one-line notice that a stale lock was broken."""
    return (f"Note: broke the stale state lock of {info.describe()}: that process is no longer running "
            f"(audited as lock-broken; its run is recorded as interrupted in `infraplan history`)")


def in_progress_notice(info: LockInfo) -> str:
    """The one-line notice a read-only command gives while the state is locked."""
    if info.holder_gone():
        return (f"Note: the state lock of {info.describe()} is stale (that process is no longer running); "
                "the next apply breaks it")
    article = "an" if info.operation[:1].lower() in "aeiou" else "a"
    return (f"Note: {article} {info.operation} is in progress: the state is locked by {info.describe()}; "
            "this plan may be out of date when it finishes")


def current(store: Any) -> LockInfo | None:
    """The lock currently held, if any."""
    with store._read() as conn:
        if conn is None:
            return None
        row = conn.execute(f"SELECT {_select(conn)} FROM locks WHERE slot = 1").fetchone()
    return _row_to_info(row) if row else None


def _break(store: Any, conn: sqlite3.Connection, info: LockInfo, event: str, who: str | None) -> None:
    """Inside a write transaction: drop `info`'s lock, audit it, close its run's history row."""
    conn.execute("DELETE FROM locks WHERE id = ?", [info.id])
    _close_runs(conn)
    store.db.table("audit").insert(
        {
            "at": utc_now(),
            "event": event,
            "address": None,
            "details": json.dumps(info.as_dict(), sort_keys=True),
            "who": who or default_who(),
        }
    )


def _close_runs(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE history SET status = 'interrupted', finished_at = ? WHERE status = ?", [utc_now(), RUNNING])


def acquire(store: Any, operation: str, *, who: str | None = None,
            on_broken: Callable[[LockInfo], None] | None = None) -> LockInfo:
    """Take the lock or raise LockError naming the holder, without waiting.

    A stale lock (holder gone from this host) is broken first and `on_broken` told.
    """
    pid = os.getpid()
    info = LockInfo(
        id=uuid.uuid4().hex,
        who=who or default_who(),
        pid=pid,
        host=hostname(),
        operation=operation,
        since=utc_now(),
        pid_started=process_start_time(pid),
    )
    broken = None
    with store._transaction(bump_serial=False) as conn:
        row = conn.execute(f"SELECT {_select(conn)} FROM locks WHERE slot = 1").fetchone()
        if row is not None:
            holder = _row_to_info(row)
            if not holder.holder_gone():
                raise LockError(held_message(holder), holder=holder.as_dict())
            _break(store, conn, holder, "lock-broken", info.who)
            broken = holder
        # only a lock holder has a running history row: one left now belongs to a run that ended
        # without closing it (killed, or stopped while it wrote its end)
        _close_runs(conn)
        store.db.table("locks").insert({"slot": 1, **info.as_dict()})
    if broken is not None and on_broken is not None:
        on_broken(broken)
    return info


def break_stale(store: Any, *, who: str | None = None) -> LockInfo | None:
    """Break the lock if its holder is gone from this host (audited); the broken lock, else None."""
    with store._transaction(bump_serial=False) as conn:
        row = conn.execute(f"SELECT {_select(conn)} FROM locks WHERE slot = 1").fetchone()
        if row is None:
            return None
        holder = _row_to_info(row)
        if not holder.holder_gone():
            return None
        _break(store, conn, holder, "lock-broken", who)
    return holder


def release(store: Any, info: LockInfo) -> bool:
    """Drop the lock if it is still `info`'s (it may have been force-unlocked)."""
    with store._transaction(bump_serial=False) as conn:
        return conn.execute("DELETE FROM locks WHERE id = ?", [info.id]).rowcount > 0


@contextlib.contextmanager
def hold(store: Any, operation: str, *, who: str | None = None,
         on_broken: Callable[[LockInfo], None] | None = None) -> Iterator[LockInfo]:
    """Context manager: hold the lock for the duration of the block."""
    info = acquire(store, operation, who=who, on_broken=on_broken)
    try:
        yield info
    finally:
        release(store, info)


def force_unlock(store: Any, lock_id: str, *, who: str | None = None) -> LockInfo:
    """Remove the lock if its id is `lock_id`; audit it. Returns the broken lock."""
    with store._transaction(bump_serial=False) as conn:
        row = conn.execute(f"SELECT {_select(conn)} FROM locks WHERE slot = 1").fetchone()
        if row is None:
            raise LockError(f"state is not locked; nothing to force-unlock (lock ID {lock_id})")
        info = _row_to_info(row)
        if info.id != lock_id:
            raise LockError(
                f"lock ID {lock_id} does not match the current lock {info.id} "
                f"held by {info.who} (pid {info.pid} on {info.host}) for {info.operation}",
                holder=info.as_dict(),
            )
        _break(store, conn, info, "force-unlock", who)
    return info

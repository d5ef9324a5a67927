"""The state lock: at most one row in the `locks` table.

A run that changes state holds the lock for its whole duration. Acquiring is
atomic (a write transaction: check, insert) and never waits for the holder: a held
lock is reported at once, naming who holds it. A history row left ``running`` (its
run ended without closing it) is closed as ``interrupted`` by the next acquirer.

Whether a holder is gone is the backend's to tell. On SQLite, a lock whose holder ran
on this host and is gone (its pid no longer exists, or now belongs to a process
started at another time) is broken by the next acquirer, audited as ``lock-broken``;
a lock held from another host is never broken automatically. On PostgreSQL the row
comes with a session-level advisory lock held by the holder's database connection:
the server drops it when that session ends (a killed process on any host), and the
next acquirer treats the row as stale. `force_unlock` breaks the rest, audited.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


from infraplan.errors import LockError, StateUnreachable
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
    #: whether the holder's database session still holds the lock, where the backend can tell
    #: (PostgreSQL's advisory lock); None where it cannot (SQLite). Not stored.
    session_alive: bool | None = field(default=None, compare=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        del d["session_alive"]
        return d

    def holder_state(self) -> HolderState:
        """Whether the holder still runs: a pid alone is not proof, as pids are reused."""
        if self.session_alive is not None:
            return HolderState.ALIVE if self.session_alive else HolderState.GONE
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


def _select(store: Any, conn: Any) -> str:
    """The lock row's columns (older state files have no pid_started until they are written)."""
    return _COLUMNS + (", pid_started" if "pid_started" in store._columns(conn, "locks") else "")


def _row_to_info(row: tuple) -> LockInfo:
    return LockInfo(*row)


def _read_row(store: Any, conn: Any) -> LockInfo | None:
    row = conn.execute(f"SELECT {_select(store, conn)} FROM locks WHERE slot = 1").fetchone()
    return None if row is None else _row_to_info(row)


def held_message(info: LockInfo) -> str:
    """The LockError message for a lock held by `info`."""
    msg = f"state is locked by {info.describe()}; lock ID {info.id}"
    if info.session_alive:
        return msg + ("; it is released when that run ends or its database session closes; if that run hangs, "
                      f"run: infraplan force-unlock {info.id}")
    if info.holder_gone():
        msg += f"; pid {info.pid} is no longer running on this host"
    return msg + f"; if that run is gone, run: infraplan force-unlock {info.id}"


def _gone(info: LockInfo) -> str:
    return "its database session ended" if info.session_alive is False else "that process is no longer running"


def broken_notice(info: LockInfo) -> str:
    """The one-line notice that a stale lock was broken."""
    return (f"Note: broke the stale state lock of {info.describe()}: {_gone(info)} "
            f"(audited as lock-broken; its run is recorded as interrupted in `infraplan history`)")


def in_progress_notice(info: LockInfo) -> str:
    """The one-line notice a read-only command gives while the state is locked."""
    if info.holder_gone():
        return (f"Note: the state lock of {info.describe()} is stale ({_gone(info)}); "
                "the next apply breaks it")
    article = "an" if info.operation[:1].lower() in "aeiou" else "a"
    return (f"Note: {article} {info.operation} is in progress: the state is locked by {info.describe()}; "
            "this plan may be out of date when it finishes")


def current(store: Any) -> LockInfo | None:
    """The lock currently held, if any."""
    with store._read() as conn:
        if conn is None:
            return None
        info = _read_row(store, conn)
        return None if info is None else store._annotate_lock(conn, info)


def _break(store: Any, conn: Any, info: LockInfo, event: str, who: str | None) -> None:
    """Inside a write transaction: drop `info`'s lock, audit it, close its run's history row."""
    conn.execute("DELETE FROM locks WHERE id = ?", [info.id])
    _close_runs(conn)
    store._audit_row(conn, event, address=None, details=info.as_dict(), who=who)


def _close_runs(conn: Any) -> None:
    conn.execute("UPDATE history SET status = 'interrupted', finished_at = ? WHERE status = ?", [utc_now(), RUNNING])


def acquire(store: Any, operation: str, *, who: str | None = None,
            on_broken: Callable[[LockInfo], None] | None = None) -> LockInfo:
    """Take the lock or raise LockError naming the holder, without waiting.

    A stale lock (its holder gone) is broken first and `on_broken` told.
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
    session = store._take_session_lock()
    if session is False:  # another live session holds it
        holder = current(store)
        if holder is None:
            raise LockError("state is locked by another run whose lock row is not written yet, or was "
                            "force-unlocked while that run still holds its database session; try again")
        raise LockError(held_message(holder), holder=holder.as_dict())
    broken = None
    try:
        with store._transaction(bump_serial=False) as conn:
            holder = _read_row(store, conn)
            if holder is not None:
                if session:  # we hold the session lock, so the row's session is gone
                    holder = dataclasses.replace(holder, session_alive=False)
                elif not holder.holder_gone():
                    raise LockError(held_message(holder), holder=holder.as_dict())
                _break(store, conn, holder, "lock-broken", info.who)
                broken = holder
            # only a lock holder has a running history row: one left now belongs to a run that ended
            # without closing it (killed, or stopped while it wrote its end)
            _close_runs(conn)
            row = info.as_dict()
            conn.execute(f"INSERT INTO locks (slot, {', '.join(row)}) VALUES (1, {', '.join('?' * len(row))})",
                         list(row.values()))
    except BaseException:
        if session:
            store._drop_session_lock()
        raise
    if broken is not None and on_broken is not None:
        on_broken(broken)
    return info


def break_stale(store: Any, *, who: str | None = None) -> LockInfo | None:
    """Break the lock if its holder is gone (audited); the broken lock, else None."""
    session = store._take_session_lock()
    if session is False:
        return None
    try:
        with store._transaction(bump_serial=False) as conn:
            holder = _read_row(store, conn)
            if holder is None:
                return None
            if session:
                holder = dataclasses.replace(holder, session_alive=False)
            elif not holder.holder_gone():
                return None
            _break(store, conn, holder, "lock-broken", who)
        return holder
    finally:
        if session:
            store._drop_session_lock()


def release(store: Any, info: LockInfo) -> bool:
    """Drop the lock if it is still `info`'s (it may have been force-unlocked)."""
    try:
        with store._transaction(bump_serial=False) as conn:
            return conn.execute("DELETE FROM locks WHERE id = ?", [info.id]).rowcount > 0
    except StateUnreachable:
        return False  # the database session that held the lock is gone, and the lock with it
    finally:
        store._drop_session_lock()


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
        info = _read_row(store, conn)
        if info is None:
            raise LockError(f"state is not locked; nothing to force-unlock (lock ID {lock_id})")
        if info.id != lock_id:
            raise LockError(
                f"lock ID {lock_id} does not match the current lock {info.id} "
                f"held by {info.who} (pid {info.pid} on {info.host}) for {info.operation}",
                holder=info.as_dict(),
            )
        _break(store, conn, info, "force-unlock", who)
        store._end_holder_session(conn, info)
    return info

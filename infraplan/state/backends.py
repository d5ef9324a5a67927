"""Open a state by where it is: `open_store(location)` gives the SQLite store for a path and
the PostgreSQL store for a `postgresql://` URL; the caller sees only `infraplan.state.api.Store`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from infraplan.state.api import BackendKind, StateLocation, Store


def open_store(location: str | Path | StateLocation, *, secrets: Iterable[str] = (),
               readonly: bool = False, busy_timeout: float | None = None) -> Store:
    """The state at `location`, opened for writing (created and migrated if needed), or with
    `readonly` for reading only (nothing created or changed; a missing state reads as empty).

    `busy_timeout` is how long an SQLite write waits for another writer (PostgreSQL's writes
    never wait for the state lock: its holder is named at once).
    """
    loc = StateLocation.parse(location)
    if loc.kind is BackendKind.POSTGRES:
        from infraplan.state.postgres import PostgresStore

        return PostgresStore(loc, readonly=readonly, secrets=secrets)
    from infraplan.state.store import DEFAULT_BUSY_TIMEOUT, StateStore

    return StateStore(loc.path, readonly=readonly, secrets=secrets,
                      busy_timeout=DEFAULT_BUSY_TIMEOUT if busy_timeout is None else busy_timeout)


def open_readonly_store(location: str | Path | StateLocation, *, secrets: Iterable[str] = (),
                        busy_timeout: float | None = None) -> Store:
    """`open_store(location, readonly=True)`."""
    return open_store(location, secrets=secrets, readonly=True, busy_timeout=busy_timeout)

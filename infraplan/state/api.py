"""The state store's one API, whichever backend holds the state.

`StateLocation` says where a state is: a path (SQLite, the default) or a `postgresql://`
URL. `Store` is what the engine and the CLI call; `infraplan.state.store.StateStore`
(SQLite) and `infraplan.state.postgres.PostgresStore` both provide it, and
`infraplan.state.backends.open_store` picks one by location. Only a file has a file
backup, file modes and a page-level integrity scan; those stay SQLite-only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from infraplan.state.lock import LockInfo
from infraplan.state.records import AuditEntry, DriftRun, HistoryEntry, ResourceRecord, StateSnapshot
from infraplan.models.kinds import ResourceKind

#: URL schemes that name a PostgreSQL database (libpq accepts both)
POSTGRES_SCHEMES = ("postgresql", "postgres")
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_SECRET_PARAMS = frozenset({"password", "passfile", "sslpassword"})


class BackendKind(StrEnum):
    """Which database holds a state."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"


@dataclass(frozen=True)
class StateLocation:
    """Where a state lives: a file path or a database URL (the password never shown)."""

    kind: BackendKind
    target: str  # the path, or the URL as given (may hold a password: use `display`)

    @classmethod
    def parse(cls, value: str | Path | StateLocation) -> StateLocation:
        """A path, or a `postgresql://` URL; another scheme is a StateError."""
        if isinstance(value, StateLocation):
            return value
        if isinstance(value, Path):
            return cls(BackendKind.SQLITE, str(value))
        m = _URL.match(value)
        if m is None:
            return cls(BackendKind.SQLITE, value)
        if m["scheme"].lower() in POSTGRES_SCHEMES:
            return cls(BackendKind.POSTGRES, value)
        from infraplan.errors import StateError

        raise StateError(f"state location {redact_url(value)} is neither a file path nor a postgresql:// URL "
                         f"(scheme {m['scheme']!r} is not a state backend)")

    @property
    def is_file(self) -> bool:
        return self.kind is BackendKind.SQLITE

    @property
    def path(self) -> Path:
        """The state file (SQLite only)."""
        if not self.is_file:
            raise ValueError(f"{self.display} is not a file")
        return Path(self.target)

    @property
    def display(self) -> str:
        """For messages: the path, or the URL with its password replaced by ***."""
        return self.target if self.is_file else redact_url(self.target)

    @property
    def without_password(self) -> str:
        """The path, or the URL with any password left out (to record in a saved plan: libpq finds the
        password in PGPASSWORD or ~/.pgpass, or --state gives it again)."""
        if self.is_file:
            return self.target
        return redact_url(self.target).replace(":***@", "@")

    def exists(self) -> bool:
        """A file that is there; a database is taken to exist (opening it says if it does not)."""
        return self.path.exists() if self.is_file else True

    def runtime_id(self, project_dir: Path) -> Path:
        """A path that stands for this state where providers need one (their runtime folder and
        the mark on what they launch): the file itself, or one per database beside the config."""
        if self.is_file:
            return self.path
        parts = urlsplit(self.target)
        db = parts.path.lstrip("/") or "postgres"
        host = (parts.hostname or "local").replace("/", "_")
        return project_dir / f"postgres-{host}-{parts.port or 5432}-{db}.state"

    def __str__(self) -> str:
        return self.display


def redact_url(url: str) -> str:
    """`url` with any password (in the user part or the query) replaced by ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}:***@{hostport}" if sep else netloc
        query = "&".join(f"{k}={'***' if k.lower() in _SECRET_PARAMS else quote(v, safe='')}"
                         for k, v in parse_qsl(parts.query, keep_blank_values=True))
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return f"{url.split('://', 1)[0]}://***"


def url_secrets(url: str) -> list[str]:
    """The password strings inside `url`, to scrub from any message a driver returns."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS and v]
    except ValueError:
        return []
    return [s for s in found if s]


class Store(Protocol):
    """What the engine and the CLI ask of a state, on any backend.

    Every write is its own committed transaction (an intent before each provider call, its
    result right after); writes that change resources or outputs bump the serial once;
    `batch()` groups writes into one transaction. Secrets are sealed on write and
    restored on read. `readonly` stores never create or change anything.
    """

    location: StateLocation
    readonly: bool

    # opening and transactions
    def close(self) -> None: ...
    def __enter__(self) -> Store: ...
    def __exit__(self, *exc: object) -> None: ...
    def batch(self) -> contextlib.AbstractContextManager[Store]: ...

    # meta and reads
    @property
    def lineage(self) -> str | None: ...
    @property
    def serial(self) -> int: ...
    def snapshot(self) -> StateSnapshot: ...
    def get(self, address: str, deposed: str = "") -> ResourceRecord | None: ...
    def resources(self, include_deposed: bool = True) -> list[ResourceRecord]: ...

    # resource writes
    def record_intent(self, address: str, *, action: str, kind: ResourceKind, provider: str | None,
                      attributes: dict, dependencies: Iterable[str] = (), deposed: str = "") -> None: ...
    def record_result(self, address: str, *, attributes: dict, status: str = "ready", deposed: str = "",
                      dependencies: Iterable[str] | None = None) -> None: ...
    def put(self, address: str, *, kind: ResourceKind, attributes: dict, provider: str | None = None,
            dependencies: Iterable[str] = ()) -> None: ...
    def undepose(self, address: str, key: str) -> None: ...
    def record_failure(self, address: str, error: str, *, deposed: str = "") -> None: ...
    def remove(self, address: str, *, deposed: str = "", missing_ok: bool = False) -> bool: ...
    def depose(self, address: str) -> str: ...
    def move(self, src: str, dst: str) -> list[str]: ...
    def taint(self, address: str) -> None: ...
    def untaint(self, address: str) -> None: ...

    # outputs, history, audit
    def set_outputs(self, values: dict[str, Any], sensitive: Iterable[str] = ()) -> None: ...
    def outputs(self) -> dict[str, Any]: ...
    def sensitive_outputs(self) -> frozenset[str]: ...
    def add_history(self, *, operation: str, plan_hash: str | None, summary: dict, who: str | None = None,
                    started_at: str | None, finished_at: str | None, status: str, config_digest: str | None,
                    desired_config: dict | None = None) -> int: ...
    def finish_history(self, history_id: int, *, status: str, summary: dict, finished_at: str,
                       desired_config: dict | None = None) -> None: ...
    def history(self, limit: int | None = None) -> list[HistoryEntry]: ...
    def get_history(self, history_id: int) -> HistoryEntry | None: ...
    def audit(self, event: str, *, address: str | None = None, details: dict | None = None,
              who: str | None = None) -> int: ...
    def audit_log(self, limit: int | None = None) -> list[AuditEntry]: ...
    def audit_rows(self) -> list[tuple]: ...

    # the lock
    def lock(self, operation: str, *, who: str | None = None,
             on_broken: Callable[[LockInfo], None] | None = None) -> contextlib.AbstractContextManager[LockInfo]: ...
    def break_stale_lock(self, *, who: str | None = None) -> LockInfo | None: ...
    def current_lock(self) -> LockInfo | None: ...
    def force_unlock(self, lock_id: str, *, who: str | None = None) -> LockInfo: ...

    # the file backup (SQLite); None where the backend keeps none
    def write_backup(self) -> Path | None: ...

    # drift runs, activity, alerts, rollbacks (never bump the serial)
    def add_drift_run(self, *, started_at: str, finished_at: str, duration_s: float, exit_code: int,
                      counts: dict, findings: list, checked: int, who: str | None = None) -> int: ...
    def drift_runs(self, limit: int | None = None) -> list[DriftRun]: ...
    def drift_activity(self) -> dict[str, dict]: ...
    def set_drift_activity(self, rows: dict[str, dict], *, prune: bool = True) -> None: ...
    def alert_rows(self, topic: str) -> list[dict]: ...
    def save_alert_rows(self, topic: str, rows: list[dict]) -> None: ...
    def record_rollback(self, fleet: str, fingerprint: str, reason: str, evidence: dict | None = None) -> int: ...
    def rollbacks(self, fleet: str | None = None) -> list[dict]: ...
    def rolled_back(self, fleet: str, fingerprint: str) -> dict | None: ...
    def clear_rollbacks(self, fleet: str, fingerprint: str | None = None) -> int: ...


"""A throwaway PostgreSQL database per test, on the server at 127.0.0.1:5432 (or the one
`INFRAPLAN_TEST_POSTGRES` names: an admin URL such as postgresql://user@host:port/postgres).

`throwaway_database()` creates `test_<random>` and drops it afterwards; `skip_reason()`
says why none can be made ("PostgreSQL not reachable at ..."), for a one-line skip that
CI's unexpected-skip check can tell apart from the rest.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

ENV = "INFRAPLAN_TEST_POSTGRES"
DEFAULT_SERVER = "127.0.0.1:5432"
USERS = ("root", "postgres")


def _candidates() -> list[str]:
    given = os.environ.get(ENV)
    if given:
        return [given]
    return [f"postgresql://{user}@{DEFAULT_SERVER}/postgres" for user in USERS]


@functools.cache
def _admin() -> tuple[str | None, str]:
    """(an admin URL that connects, the reason when none does)."""
    import psycopg

    problems = []
    for url in _candidates():
        try:
            psycopg.connect(url, connect_timeout=3, autocommit=True).close()
            return url, ""
        except psycopg.Error as e:
            problems.append(str(e).strip().splitlines()[0])
    where = os.environ.get(ENV) or f"{DEFAULT_SERVER} (users {', '.join(USERS)})"
    return None, f"PostgreSQL not reachable at {where}: {problems[-1]}"


def admin_url() -> str | None:
    return _admin()[0]


def skip_reason() -> str:
    return _admin()[1]


def database_url(admin: str, name: str) -> str:
    parts = urlsplit(admin)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _admin_execute(sql: str, params: list | None = None) -> list:
    import psycopg

    url = admin_url()
    assert url is not None, skip_reason()
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A new, empty database's URL for the block; dropped (its sessions ended) afterwards."""
    from infraplan.state.postgres import close_pool

    admin = admin_url()
    assert admin is not None, skip_reason()
    name = f"test_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    url = database_url(admin, name)
    try:
        yield url
    finally:
        close_pool(url)
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def end_sessions(url: str) -> int:
    """End every session connected to `url`'s database (as a server restart would); how many."""
    name = urlsplit(url).path.lstrip("/")
    rows = _admin_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", [name])
    return len(rows)


def sessions(url: str) -> int:
    """How many sessions are connected to `url`'s database."""
    name = urlsplit(url).path.lstrip("/")
    return _admin_execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name])[0][0]

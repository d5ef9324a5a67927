"""The state backup, `infraplan.db.backup` beside the state file, as Terraform keeps
`terraform.tfstate.backup`: the whole state as it was before the latest apply, destroy,
`state rm` or `state mv` that changed it.

It is written with SQLite's backup API (a consistent copy even while other readers use the
file), to a temporary file made readable by its owner only, then renamed into place: a crash
while copying leaves the previous backup whole. The copy is in rollback-journal mode, so
reading it never creates `-wal`/`-shm` files beside it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SUFFIX = ".backup"


def backup_path(state_path: Path | str) -> Path:
    """Where the backup of `state_path` is kept."""
    path = Path(state_path)
    return path.with_name(path.name + SUFFIX)


def write_backup(conn: sqlite3.Connection, state_path: Path | str) -> Path:
    """Copy the database behind `conn` (no transaction open) to the backup of `state_path`."""
    dest = backup_path(state_path)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        out = sqlite3.connect(tmp)
        try:
            conn.backup(out)
            out.execute("PRAGMA journal_mode = DELETE")
        finally:
            out.close()
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest

"""Helpers for the CLI tests: a small valid config, in-process runs, and fingerprints of a
state file to prove a command left it alone."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import psutil
from click.testing import CliRunner

from infraplan.cli.main import cli

# A config that applies without starting any process (replicas: 0), so the state it
# leaves is made by the real engine yet costs no server.
SMALL_CONFIG = """\
variable:
  replicas:
    type: number
    default: 0
model:
  llama:
    source: hf://meta-llama/Llama-3.1-8B-Instruct
    revision: "0e9e39f"
    served_name: llama-3.1-8b
fleet:
  chat:
    provider: local
    model: model.llama
    replicas: ${var.replicas}
    engine:
      type: sim
    labels:
      team: ml-platform
output:
  endpoints:
    value: ${fleet.chat.endpoints}
"""


def run(*args: str, env: dict | None = None, input: str | None = None):
    """Invoke the CLI in-process (stdin/stdout are not terminals)."""
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=True)


def checkpoint(db: Path) -> None:
    """Fold the WAL into the main file so hashing the main file sees everything."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def fingerprint(db: Path) -> dict:
    """sha256 of the state file (and of its WAL, if not empty), serial, lineage and log sizes.

    An empty WAL is left out: opening a WAL database, even read-only, may create one.
    """
    from infraplan.state import StateStore

    files = {}
    for suffix in ("", "-wal"):
        p = Path(str(db) + suffix)
        data = p.read_bytes() if p.exists() else b""
        files[p.name] = hashlib.sha256(data).hexdigest() if data else None
    store = StateStore.open_readonly(db)
    try:
        return {"files": files, "serial": store.serial, "lineage": store.lineage,
                "audit": len(store.audit_log()), "history": len(store.history())}
    finally:
        store.close()


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}

"""Who is acting: the one identity helper behind every lock, history and audit row."""

from __future__ import annotations

import getpass
import os
import socket


def hostname() -> str:
    return socket.gethostname()


def who() -> str:
    """`user@host` of this process (``uid<N>@host`` where the user has no name, as in containers)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{hostname()}"

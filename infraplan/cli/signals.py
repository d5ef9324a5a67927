"""SIGTERM (systemd stop, a CI cancel) handled as Ctrl-C while a command changes state.

Python's default for SIGTERM ends the process at once, leaving the lock and open
intents behind; raised as `Terminated` in the main thread instead, it stops the
apply as Ctrl-C does: nothing new starts, running calls are waited for and
recorded, the lock is released, and the command exits 1.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` in the main thread."""
    from infraplan.errors import Terminated

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stops_cleanly(fn):
    """Decorator for commands that apply: SIGTERM stops them as Ctrl-C does, and an apply
    that stopped waiting for running calls (a second interrupt) exits at once."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from infraplan.errors import ApplyError

        with terminate_as_interrupt():
            try:
                return fn(*args, **kwargs)
            except ApplyError as exc:
                if exc.abandoned:
                    exit_now(exc.one_line())
                raise

    return wrapper


def exit_now(message: str, code: int = 1) -> None:
    """Print `Error: message` and end the process without waiting for worker threads:
    after a second interrupt they may still sit in provider calls nobody waits for."""
    from infraplan.cli.options import emit_json, json_requested

    if json_requested():
        emit_json({"error": message, "exit_code": code})
    sys.stdout.flush()
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()
    os._exit(code)

"""The warm plugin worker: one process, many sessions, over a private UNIX socket.

Started by the host (`infraplan.providers.plugin.warm`) on first use, from the same
bootstrap as the one-shot worker. It binds its socket (0600, in the caller's 0700
run folder), detaches (a second fork, so the command that started it neither waits
for it nor keeps it as a zombie), writes ``ready PID`` on its stdout, and serves:

- each accepted connection is one `Session` of the JSON-RPC protocol, with its own
  provider instance made at ``initialize`` from the session's class and context; it is
  closed when the connection ends, so nothing is carried between workspaces, state
  files or commands except what the provider keeps at module level on purpose (the
  SkyPilot pricing cache, keyed by what it depends on);
- a connection from another uid (``SO_PEERCRED``) is closed unanswered;
- ``$/status`` and ``$/shutdown`` (see `protocol`) on any connection;
- with no connection open for ``idle_s`` seconds, or on ``$/shutdown`` or SIGTERM, it
  removes its socket (if it is still its own), lets the open sessions finish and exits.

The host names the socket after everything the worker depends on (`warm.worker_key`),
so a worker is never reused across users, plugin versions, code or environments.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from infraplan.providers.plugin import protocol
from infraplan.providers.plugin.worker import Session, run_preloads

#: bind() and connect() take at most 107 bytes of path on Linux
MAX_SOCKET_PATH = 100


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a UNIX socket (Linux ``SO_PEERCRED``)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _socket_address(path: Path, dir_fd: int) -> str:
    """`path` as bind()/connect() can take it: through ``/proc/self/fd`` when it is too long."""
    return str(path) if len(str(path)) <= MAX_SOCKET_PATH else f"/proc/self/fd/{dir_fd}/{path.name}"


class WarmWorker:
    """The accept loop, the idle clock and the sessions of one warm worker."""

    def __init__(self, spec: dict[str, Any], listener: socket.socket, path: Path, dir_fd: int, inode: int):
        self.spec = spec
        self.listener = listener
        self.path = path
        self.dir_fd = dir_fd
        self.inode = inode
        self.idle_s = float(spec.get("idle_s") or 300.0)
        self.started = time.time()
        self.served = 0  # sessions that initialized, ever
        self.connections = 0  # open now (sessions and status queries): the worker does not stop under them
        self.sessions = 0  # open sessions that initialized
        self.last = time.monotonic()  # when the last session ended (or the worker started)
        self.stopping = False
        self._cond = threading.Condition()
        self._wake_r, self._wake_w = os.pipe()

    # -- the loop ------------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        try:
            while not self.stopping:
                with self._cond:
                    timeout = None if self.connections else self.idle_s - (time.monotonic() - self.last)
                if timeout is not None and timeout <= 0:
                    print(f"infraplan warm worker {os.getpid()}: idle for {self.idle_s:g}s, stopping",
                          file=sys.stderr, flush=True)
                    break
                ready, _, _ = select.select([self.listener, self._wake_r], [], [], timeout)
                if self._wake_r in ready:
                    os.read(self._wake_r, 512)
                if self.listener in ready and not self.stopping:
                    try:
                        conn, _ = self.listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    self._admit(conn)
        finally:
            self._unlink()
            self.listener.close()
            with self._cond:  # the sessions still open end first; a status query gets a moment to be answered
                self._cond.wait_for(lambda: not self.sessions)
                self._cond.wait_for(lambda: not self.connections, timeout=5.0)

    def stop(self) -> None:
        """Stop taking connections (also from a signal handler: no lock here)."""
        self.stopping = True
        os.write(self._wake_w, b"x")

    def _unlink(self) -> None:
        """Remove the socket if it is still ours (a newer worker may have bound the name since)."""
        try:
            if os.stat(self.path.name, dir_fd=self.dir_fd).st_ino == self.inode:
                os.unlink(self.path.name, dir_fd=self.dir_fd)
        except OSError:
            pass

    # -- connections ---------------------------------------------------------------
    def _admit(self, conn: socket.socket) -> None:
        try:
            uid = peer_uid(conn)
        except OSError:
            uid = -1
        if uid != os.geteuid():
            print(f"infraplan warm worker {os.getpid()}: refused a connection from uid {uid}", file=sys.stderr,
                  flush=True)
            conn.close()
            return
        with self._cond:
            self.connections += 1
        threading.Thread(target=self._serve, args=(conn,), name="warm-session", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        lock = threading.Lock()

        def send(msg: dict[str, Any]) -> None:
            data = (protocol.dumps(msg) + "\n").encode()
            with lock:
                try:
                    conn.sendall(data)
                except OSError:  # the host is gone; its calls end unanswered
                    pass

        session = Session(self.spec, send, None, control={protocol.STATUS: self._status,
                                                          protocol.SHUTDOWN: self._shutdown})
        counted = False
        try:
            with conn.makefile("r", encoding="utf-8", newline="\n") as lines:
                for line in lines:
                    session.handle(line)
                    if session.initialized and not counted:
                        counted = True
                        with self._cond:
                            self.sessions += 1
                            self.served += 1
        except (OSError, ValueError):
            pass
        finally:
            session.finish()
            if session.provider is not None and not session.closed:  # the host died before `close`
                try:
                    session.provider.close()
                except Exception:  # noqa: BLE001 - logged; the next session gets a new instance anyway
                    traceback.print_exc(file=sys.stderr)
            conn.close()
            with self._cond:
                self.connections -= 1
                if counted:
                    self.sessions -= 1
                    self.last = time.monotonic()
                self._cond.notify_all()
            os.write(self._wake_w, b"x")

    # -- $/status, $/shutdown ----------------------------------------------------------
    def _status(self, _params: Any) -> dict[str, Any]:
        from infraplan.providers.plugin.worker import _server_info

        with self._cond:
            idle = 0.0 if self.sessions else time.monotonic() - self.last
            return {"pid": os.getpid(), "plugin": self.spec.get("plugin"), "key": self.spec.get("key"),
                    "started_at": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
                    "uptime_s": round(time.time() - self.started, 3), "idle_s": round(idle, 3),
                    "idle_timeout_s": self.idle_s, "open_sessions": self.sessions, "sessions_served": self.served,
                    "stopping": self.stopping, **_server_info(self.spec)}

    def _shutdown(self, _params: Any) -> dict[str, Any]:
        self.stop()
        with self._cond:
            return {"pid": os.getpid(), "open_sessions": self.sessions}


def _listen(path: Path) -> tuple[socket.socket, int, int]:
    """Bind and listen at `path` (0600): the socket, its folder's descriptor, the socket file's inode."""
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o077)  # private from the start; the provider's own files keep the user's umask
    try:
        listener.bind(_socket_address(path, dir_fd))
    finally:
        os.umask(umask)
    os.chmod(path.name, 0o600, dir_fd=dir_fd)
    listener.listen(64)
    return listener, dir_fd, os.stat(path.name, dir_fd=dir_fd).st_ino


def serve_warm(spec: dict[str, Any]) -> None:
    """Entry point of the warm worker process (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener, dir_fd, inode = _listen(Path(spec["socket"]))
    child = os.fork()
    if child:  # the starter's child: say where the worker is and leave it to init
        os.write(1, f"ready {child}\n".encode())
        os._exit(0)
    os.dup2(2, 1)  # the ready pipe closes; SDK output goes to the log
    sys.stdout = sys.stderr
    worker = WarmWorker(spec, listener, Path(spec["socket"]), dir_fd, inode)
    try:
        run_preloads(spec)
    except BaseException:  # noqa: BLE001 - the host reads the log's tail
        traceback.print_exc(file=sys.stderr)
        worker._unlink()
        raise SystemExit(1) from None
    print(f"infraplan warm worker {os.getpid()}: serving {spec.get('plugin')} at {spec['socket']} "
          f"(idle timeout {spec.get('idle_s')}s)", file=sys.stderr, flush=True)
    worker.run()

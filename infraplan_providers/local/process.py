"""Process helpers for the local provider.

Servers are started detached (own session and process group) so they outlive
the CLI; they are found again by pid (checked against the recorded start time
and instance id) or, after a crash between spawn and recording, by scanning
for the instance id in command lines and environments.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from infraplan.util.files import open_private_append

INSTANCE_ENV = "INFRAPLAN_INSTANCE_ID"

# Popen objects of servers started by this process, so exited children are
# reaped (no zombies) and their exit codes can be read.
_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


# -- ports -----------------------------------------------------------------


def parse_port_range(text: str) -> tuple[int, int]:
    """``"30000-39999"`` -> ``(30000, 39999)``; ValueError when malformed."""
    lo_s, sep, hi_s = text.partition("-")
    if not sep or not lo_s.strip().isdigit() or not hi_s.strip().isdigit():
        raise ValueError(f"port range must look like 30000-39999, got {text!r}")
    lo, hi = int(lo_s), int(hi_s)
    if not 1024 <= lo <= hi <= 65535:
        raise ValueError(f"port range {text!r} must lie within 1024-65535 with low <= high")
    return lo, hi


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port right now (checked by binding)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Same option servers use, so ports in TIME_WAIT count as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortRegistry:
    """Ports handed out in this process, so parallel creates never collide."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[int, set[str]] = {}

    def claimed(self) -> set[int]:
        with self._lock:
            return set(self._claims)

    def claim(self, port: int, owner: str) -> None:
        """Record a fixed port for `owner` (no check: it may still be held by a predecessor)."""
        with self._lock:
            self._claims.setdefault(port, set()).add(owner)

    def allocate(self, host: str, lo: int, hi: int, owner: str) -> int:
        """A port in [lo, hi] that is free and not handed out before; raises RuntimeError if none."""
        with self._lock:
            span = hi - lo + 1
            start = random.randrange(span)  # spread allocations; fewer retries on busy ranges
            for i in range(span):
                port = lo + (start + i) % span
                if port in self._claims:
                    continue
                if port_is_free(host, port):
                    self._claims[port] = {owner}
                    return port
        raise RuntimeError(f"no free port in {lo}-{hi} on {host}")

    def release(self, port: int | None, owner: str) -> None:
        """Drop `owner`'s claim on `port`; unknown ports and owners are ignored."""
        if port is None:
            return
        with self._lock:
            owners = self._claims.get(port)
            if owners is None:
                return
            owners.discard(owner)
            if not owners:
                del self._claims[port]


ports = PortRegistry()


# -- spawning --------------------------------------------------------------


def spawn_detached(
    argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start `argv` in a new session with stdout/stderr appended to `log_path`."""
    with open_private_append(log_path) as log:  # logs may quote secrets (SGLang prints its server args)
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=cwd,
        )
    with _children_lock:
        _children[proc.pid] = proc
    return proc


def exit_code(pid: int) -> int | None:
    """The exit code of a child started here, or None while it runs / if unknown."""
    with _children_lock:
        proc = _children.get(pid)
    return None if proc is None else proc.poll()


def _reap(pid: int) -> None:
    with _children_lock:
        proc = _children.get(pid)
        if proc is not None and proc.poll() is not None:
            del _children[pid]


# -- finding ---------------------------------------------------------------


def _alive(proc: psutil.Process) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(proc.pid)
            return False
        return proc.is_running()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _cmdline_has(proc: psutil.Process, instance_id: str) -> bool:
    try:
        return any(instance_id in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _environ_has(proc: psutil.Process, instance_id: str) -> bool:
    try:
        return proc.environ().get(INSTANCE_ENV) == instance_id
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return False


def carries_instance(proc: psutil.Process, instance_id: str) -> bool:
    """Whether the process was started for `instance_id` (command line or environment)."""
    return _cmdline_has(proc, instance_id) or _environ_has(proc, instance_id)


def find_by_pid(pid: int, started_at: float | None, instance_id: str | None) -> psutil.Process | None:
    """The process `pid` if it is alive and is the one recorded (start time within 1 s, instance id)."""
    try:
        proc = psutil.Process(pid)
        if not _alive(proc):
            return None
        if started_at is not None and abs(proc.create_time() - float(started_at)) > 1.0:
            return None  # the pid was reused by another process
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if instance_id and not carries_instance(proc, instance_id):
        return None
    return proc


def find_by_instance_id(instance_id: str) -> psutil.Process | None:
    """Scan all processes for `instance_id`; the group leader wins when children inherit it."""
    me = os.getpid()
    by_cmdline: list[psutil.Process] = []
    others: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == me:
            continue
        cmdline = proc.info.get("cmdline") or []
        if any(instance_id in part for part in cmdline):
            by_cmdline.append(proc)
        else:
            others.append(proc)
    candidates = [p for p in by_cmdline if _alive(p)]
    if not candidates:
        candidates = [p for p in others if _environ_has(p, instance_id) and _alive(p)]
    return _leader(candidates)


def _leader(candidates: list[psutil.Process]) -> psutil.Process | None:
    if not candidates:
        return None
    pids = {p.pid for p in candidates}
    for proc in candidates:
        try:
            if os.getpgid(proc.pid) == proc.pid:
                return proc
        except OSError:
            continue
    for proc in candidates:  # else the one whose parent is not a candidate itself
        try:
            if proc.ppid() not in pids:
                return proc
        except psutil.Error:
            continue
    return candidates[0]


def find_server(pid: int | None, started_at: float | None, instance_id: str | None) -> psutil.Process | None:
    """Find a server by recorded pid, else by instance id."""
    if pid:
        proc = find_by_pid(int(pid), started_at, instance_id)
        if proc is not None:
            return proc
    if instance_id:
        return find_by_instance_id(instance_id)
    return None


def observe(attrs: dict, noun: str) -> tuple[dict | None, str | None]:
    """The recorded attributes with the live pid and start time, or (None, why it is gone)."""
    proc = find_server(attrs.get("pid"), attrs.get("started_at"), attrs.get("instance_id"))
    if proc is None:
        return None, f"no {noun} process found"
    try:
        return {**attrs, "pid": proc.pid, "started_at": proc.create_time()}, None
    except psutil.NoSuchProcess:
        return None, f"{noun} process exited"


# -- stopping --------------------------------------------------------------


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal_all(procs: Iterable[psutil.Process], leader_pid: int, sig: int) -> None:
    group = None
    try:
        if os.getpgid(leader_pid) == leader_pid:
            group = leader_pid
    except OSError:
        pass
    if group is not None:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:  # children that left the group still get the signal
        try:
            p.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def stop_process(proc: psutil.Process, timeout: float) -> bool:
    """SIGTERM the server's group and children, wait `timeout` s, then SIGKILL; True when all gone."""
    procs = _tree(proc)
    if not procs:
        _reap(proc.pid)
        return True
    _signal_all(procs, proc.pid, signal.SIGTERM)
    alive = _wait_gone(procs, max(timeout, 0.0))
    if alive:
        _signal_all(alive, proc.pid, signal.SIGKILL)
        alive = _wait_gone(alive, 5.0)
    _reap(proc.pid)
    return not alive


def _wait_gone(procs: list[psutil.Process], timeout: float, interval: float = 0.02) -> list[psutil.Process]:
    """Wait until every process has exited; a zombie counts as exited.

    psutil.wait_procs waits for a zombie to be reaped, which for a server started by an
    earlier CLI run is up to its new parent (where PID 1 reaps slowly, that took seconds).
    """
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while True:
        still = []
        for p in alive:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    still.append(p)
            except psutil.NoSuchProcess:
                pass
        alive = still
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(interval)


def stop_pid(pid: int, timeout: float) -> bool:
    """stop_process by pid; a pid already gone counts as stopped."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        _reap(pid)
        return True
    return stop_process(proc, timeout)


# -- health ----------------------------------------------------------------


@dataclass
class ReadyOutcome:
    """How waiting for /health ended."""

    ready: bool
    exit_code: int | None = None  # set when the process exited first
    last_status: int | None = None  # the last HTTP status seen, if any
    last_error: str | None = None


#: Real SGLang's `/health` runs a one-token generation and sleeps 1 s before it answers
#: (SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION, 0.5.6 and 0.5.23 alike): a probe of it needs
#: room for that. `/ready` (0.5.23) answers at once and is asked first.
HEALTH_PROBE_TIMEOUT_S = 5.0
READY_PROBE_TIMEOUT_S = 1.0


def wait_for_health(
    endpoint: str, popen: subprocess.Popen, timeout: float, interval: float = 0.1
) -> ReadyOutcome:
    """Poll until the server is ready, the process exits, or `timeout` passes.

    Asks ``/ready`` (no generation, no auth); a server without it (404, SGLang before
    0.5.23) is asked ``/health`` instead, with a timeout that fits its real cost.
    """
    deadline = time.monotonic() + timeout
    outcome = ReadyOutcome(ready=False)
    route, probe_timeout = "/ready", READY_PROBE_TIMEOUT_S
    with httpx.Client(timeout=probe_timeout, trust_env=False) as client:
        while True:
            code = popen.poll()
            if code is not None:
                outcome.exit_code = code
                return outcome
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return outcome
            try:
                resp = client.get(f"{endpoint}{route}", timeout=min(probe_timeout, max(remaining, 0.05)))
                outcome.last_status = resp.status_code
                if resp.status_code == 200:
                    outcome.ready = True
                    return outcome
                if resp.status_code == 404 and route == "/ready":
                    route, probe_timeout = "/health", HEALTH_PROBE_TIMEOUT_S
                    continue
            except httpx.HTTPError as exc:
                outcome.last_error = f"{type(exc).__name__}: {exc} (GET {route})"
            time.sleep(min(interval, max(deadline - time.monotonic(), 0)))


# -- logs ------------------------------------------------------------------


def tail(path: Path | str | None, lines: int = 20, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a log file ('' when missing)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])

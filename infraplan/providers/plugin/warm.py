"""Warm plugin workers, the host's side: when to keep one, what it is keyed by, reaching, listing, stopping.

A one-shot worker lives for one command: every `infraplan plan` of a SkyPilot config
starts an interpreter and imports SkyPilot again. A warm worker
(`infraplan.providers.plugin.warm_worker`) outlives the command and serves the next
ones over a UNIX socket::

    PLUGIN_DIR/NAME/run-UID/            0700, owned by UID (refused otherwise)
        KEY.sock                        0600; the worker checks each peer's uid (SO_PEERCRED)
        KEY.log                         the worker's stderr
        start.lock                      one starter at a time

KEY (`worker_key`) digests everything a worker depends on: the uid, the plugin's
virtualenv (interpreter, installed packages), infraplan's code it loads by path, the
protocol version, the preloads, the environment it inherits (less variables that only
describe the terminal), the working directory, and the provider's own
`Provider.warm_key` (SkyPilot: its catalog files and config). A change in any of
them names another socket, so another worker: one is never shared between users,
plugin versions or environments, and one that read old catalogs is never asked again
(it stops when idle).

`WarmSession` is one connection: one JSON-RPC session with its own provider instance
and context. On first use, or when the socket is stale (its worker was killed), it
starts the worker under the start lock; a worker that stops while the handshake is
under way (its idle timeout) is replaced once, transparently.

When: ``INFRAPLAN_PLUGIN_KEEP=1`` keeps workers warm, ``0`` starts one per command; unset,
warm except in CI (``CI=true`` or ``INFRAPLAN_CI=1``). ``INFRAPLAN_PLUGIN_IDLE`` is
the idle timeout of the workers started from now on (seconds or a duration, 5m by default).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infraplan.errors import ProviderUnavailable
from infraplan.models.types import DurationError, parse_duration
from infraplan.providers.plugin.channel import ConnectionLost, RpcChannel
from infraplan.providers.plugin.location import plugin_dir, plugin_root
from infraplan.providers.plugin.protocol import JSONRPC, PROTOCOL_VERSION, SHUTDOWN, STATUS, dumps, request
from infraplan.providers.plugin.warm_worker import MAX_SOCKET_PATH, peer_uid

KEEP_ENV = "INFRAPLAN_PLUGIN_KEEP"
IDLE_ENV = "INFRAPLAN_PLUGIN_IDLE"
DEFAULT_IDLE_S = 300.0
_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"0", "false", "no", "off", ""})

#: variables that only describe the terminal or the test being run: they do not make another worker
VOLATILE_ENV = frozenset({
    "PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", "TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION",
    "TERM_SESSION_ID", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "PS1", "PS2",
    "PROMPT_COMMAND", "SSH_TTY", "WINDOWID", "TMUX_PANE", "STY", "VTE_VERSION", "ITERM_SESSION_ID",
    "PYTEST_CURRENT_TEST", "INFRAPLAN_LOG", KEEP_ENV, IDLE_ENV,
})

WARM_BOOTSTRAP = """\
import importlib.util, json, sys
spec = json.loads(sys.argv[1])
for name, path in spec["packages"].items():
    s = importlib.util.spec_from_file_location(name, path + "/__init__.py", submodule_search_locations=[path])
    m = importlib.util.module_from_spec(s); sys.modules[name] = m; s.loader.exec_module(m)
from infraplan.providers.plugin.warm_worker import serve_warm
serve_warm(spec)
"""

# -- when ------------------------------------------------------------------------------
def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment says CI (``CI=true``, as CI services set it, or ``INFRAPLAN_CI=1``)."""
    return environ.get("CI", "").strip().lower() in _YES or environ.get("INFRAPLAN_CI", "").strip().lower() in _YES


def supported() -> bool:
    """Warm workers need UNIX sockets with peer credentials (Linux)."""
    return hasattr(socket, "AF_UNIX") and hasattr(socket, "SO_PEERCRED")


def keep_warm(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether plugin workers outlive the command (`INFRAPLAN_PLUGIN_KEEP`, else not in CI)."""
    raw = environ.get(KEEP_ENV)
    if raw is not None and raw.strip():
        value = raw.strip().lower()
        if value not in _YES | _NO:
            raise ProviderUnavailable(f"{KEEP_ENV} must be 1 (keep plugin workers warm) or 0 (one worker per "
                                      f"command), not {raw!r}")
        if value in _YES and not supported():
            raise ProviderUnavailable(f"{KEEP_ENV}=1: warm plugin workers need Linux (UNIX sockets with SO_PEERCRED)")
        return value in _YES
    return supported() and not in_ci(environ)


def idle_timeout_s(environ: Mapping[str, str] = os.environ) -> float:
    """`INFRAPLAN_PLUGIN_IDLE`: seconds (``120``) or a duration (``10m``); 5 minutes when unset."""
    raw = environ.get(IDLE_ENV, "").strip()
    if not raw:
        return DEFAULT_IDLE_S
    try:
        return parse_duration(float(raw) if _is_number(raw) else raw)
    except DurationError:
        raise ProviderUnavailable(f"{IDLE_ENV} must be a number of seconds or a duration such as 10m, not "
                                  f"{raw!r}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- where, and what a worker is keyed by ------------------------------------------------
def run_dir(name: str, *, create: bool = True) -> Path:
    """``PLUGIN_DIR/NAME/run-UID``: this user's warm workers of plugin `name` (0700, ours, or refused)."""
    path = plugin_dir(name) / f"run-{os.geteuid()}"
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return path
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.geteuid():
        raise ProviderUnavailable(f"{path} is not a folder of yours: remove it (warm plugin workers keep their "
                                  f"sockets there)")
    if st.st_mode & 0o077:
        path.chmod(0o700)
    return path


def _stat_id(path: Path) -> list[Any]:
    try:
        st = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path), st.st_size, st.st_mtime_ns]


def _tree_id(roots: Iterable[str]) -> str:
    """A digest of every ``.py`` file's path, size and mtime under `roots`: infraplan's code the worker loads."""
    h = hashlib.sha256()
    for root in sorted(roots):
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for f in sorted(files):
                if f.endswith(".py"):
                    h.update(json.dumps(_stat_id(Path(folder) / f)).encode())
    return h.hexdigest()


def _venv_id(name: str, python: Path) -> list[Any]:
    """The plugin virtualenv: its interpreter, its manifest and its site-packages folders (pip changes them)."""
    root = plugin_dir(name)
    sites = sorted(str(p) for p in root.glob("lib*/python*/site-packages"))
    manifest = root / "infraplan-plugin.json"
    return [os.path.realpath(python), _stat_id(python.resolve()), _stat_id(manifest), [_stat_id(Path(s)) for s in sites]]


def inherited_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment a worker starts with (PYTHON* would steer the plugin's interpreter)."""
    return {k: v for k, v in environ.items() if not k.startswith("PYTHON")}


def worker_key(name: str, python: Path, process_spec: dict[str, Any], provider_key: str) -> str:
    """The name of the warm worker that may serve this command (see the module docstring)."""
    env = sorted((k, v) for k, v in inherited_env().items() if k not in VOLATILE_ENV)
    parts = {"uid": os.geteuid(), "plugin": name, "protocol": PROTOCOL_VERSION, "cwd": os.getcwd(),
             "venv": _venv_id(name, python), "code": _tree_id(process_spec["packages"].values()),
             "packages": process_spec["packages"], "preload": [_stat_id(Path(p)) for p in process_spec["preload"]],
             "report": process_spec["report"], "env": env, "provider": provider_key}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


# -- reaching a worker ---------------------------------------------------------------------
def connect(path: Path, timeout: float | None = None) -> socket.socket:
    """A connection to the worker at `path`, checked to be served by this uid.

    FileNotFoundError / ConnectionRefusedError: no worker there (none yet, or a stale socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if len(str(path)) <= MAX_SOCKET_PATH:
            sock.connect(str(path))
        else:  # a long path: through the folder's descriptor
            fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                sock.connect(f"/proc/self/fd/{fd}/{path.name}")
            finally:
                os.close(fd)
        uid = peer_uid(sock)
    except BaseException:
        sock.close()
        raise
    if uid != os.geteuid():
        sock.close()
        raise ProviderUnavailable(f"the warm plugin worker at {path} runs as uid {uid}, not as you "
                                  f"(uid {os.geteuid()}): refused; remove the socket")
    sock.settimeout(None)
    return sock


@contextlib.contextmanager
def _start_lock(run: Path) -> Iterator[None]:
    fd = os.open(run / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _prune_logs(run: Path, older_than_s: float = 86400.0) -> None:
    """Logs of workers long gone (their socket removed) are removed."""
    now = time.time()
    for log_file in run.glob("*.log"):
        try:
            if not log_file.with_suffix(".sock").exists() and now - log_file.stat().st_mtime > older_than_s:
                log_file.unlink()
        except OSError:
            pass


def start(name: str, python: Path, spec: dict[str, Any], log_path: Path, timeout: float) -> int:
    """Start a warm worker listening at ``spec["socket"]`` and wait until it does: its pid."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen([str(python), "-I", "-c", WARM_BOOTSTRAP, json.dumps(spec)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=log_fd, env=inherited_env(), start_new_session=True)
    except OSError as exc:
        raise ProviderUnavailable(f"cannot start the {name} plugin ({python}): {exc}") from exc
    finally:
        os.close(log_fd)
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + timeout
    with proc.stdout:
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                break
            chunk = os.read(proc.stdout.fileno(), 64)
            if not chunk:
                break
            line += chunk
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    words = line.split()
    if len(words) != 2 or words[0] != b"ready" or not words[1].isdigit():
        raise ProviderUnavailable(f"the warm {name} plugin worker did not start within {timeout:g}s; "
                                  f"{_tail(log_path)}")
    return int(words[1])


def _tail(log_path: Path, lines: int = 5) -> str:
    try:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        tail = []
    return f"see {log_path}" + (": " + " | ".join(tail) if tail else "")


class WarmSession(RpcChannel):
    """One session with a warm worker: its own provider instance and context, over one connection.

    `spec` is what `worker_spec` makes for a one-shot worker; the worker process gets its
    packages and preloads, the session its provider class and context (paths made absolute:
    the worker may serve commands started elsewhere)."""

    what = "warm plugin worker"

    def __init__(self, name: str, python: Path, spec: dict[str, Any], provider_key: str,
                 timeouts: dict[str, float] | None = None):
        self.python = python
        self.process_spec = {"packages": spec["packages"], "preload": spec["preload"], "report": spec["report"],
                             "plugin": name}
        context = dict(spec.get("context") or {})
        for k in ("project_dir", "state_path", "runtime_dir"):
            if k in context:
                context[k] = os.path.abspath(context[k])
        self.session = {"provider": spec["provider"], "context": context}
        self.run = run_dir(name)
        self.key = worker_key(name, python, self.process_spec, provider_key)
        self.socket_path = self.run / f"{self.key}.sock"
        self.pid: int | None = None
        self._sock: socket.socket | None = None
        super().__init__(name, self.run / f"{self.key}.log", timeouts)

    def _reach(self) -> socket.socket:
        with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
            return connect(self.socket_path)
        with _start_lock(self.run):
            with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
                return connect(self.socket_path)  # another command started it meanwhile
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()  # stale: its worker died without removing it
            _prune_logs(self.run)
            spec = dict(self.process_spec, socket=str(self.socket_path), key=self.key, idle_s=idle_timeout_s())
            start(self.name, self.python, spec, self.log_path,
                  self.timeouts.get("initialize", 120.0))
            return connect(self.socket_path)

    def _open(self) -> tuple[Iterable[bytes], Callable[[], str]]:
        try:
            sock = self._reach()
        except OSError as exc:
            raise ProviderUnavailable(f"cannot reach the warm {self.name} plugin worker at {self.socket_path}: "
                                      f"{exc}; {_tail(self.log_path)}") from exc
        self._sock = sock
        return sock.makefile("rb"), lambda: f"warm plugin worker{f' (pid {self.pid})' if self.pid else ''} closed the connection"

    def _is_open(self) -> bool:
        return self._sock is not None

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(data)

    def _disconnect(self, timeout: float) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)  # EOF: the session finishes what runs (unless cancelled) and ends
        if self._reader is not None:
            self._reader.join(timeout=timeout)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _initialize_params(self) -> dict[str, Any]:
        return dict(super()._initialize_params(), session=self.session)

    def initialize(self) -> dict[str, Any]:
        """The handshake; a worker that stopped under it (idle, killed) is replaced once."""
        try:
            info = super().initialize()
        except ConnectionLost:
            self.close(timeout=1)
            info = super().initialize()
        self.pid = (info.get("serverInfo") or {}).get("pid")
        return info


# -- status and stop ----------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerEntry:
    """A warm worker's socket and what the worker says of itself (None: nobody answers: stale)."""

    plugin: str
    socket: Path
    status: dict[str, Any] | None


def ask(path: Path, method: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """One control request (``$/status``, ``$/shutdown``) to the worker at `path`; None if none answers."""
    try:
        sock = connect(path, timeout)
    except (OSError, ProviderUnavailable):
        return None
    try:
        with sock, sock.makefile("rb") as lines:
            sock.sendall((dumps(request(1, method, {})) + "\n").encode())
            msg = json.loads(lines.readline() or b"null")
    except (OSError, ValueError):
        return None
    if not isinstance(msg, dict) or msg.get("jsonrpc") != JSONRPC or not isinstance(msg.get("result"), dict):
        return None
    return msg["result"]


def _plugin_names(names: Iterable[str] | None) -> list[str]:
    if names:
        return sorted(set(names))
    root = plugin_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def workers(names: Iterable[str] | None = None) -> list[WorkerEntry]:
    """This user's warm workers (all plugins, or those named), each asked for its status."""
    out = []
    for name in _plugin_names(names):
        run = run_dir(name, create=False)
        if not run.is_dir():
            continue
        for sock in sorted(run.glob("*.sock")):
            out.append(WorkerEntry(name, sock, ask(sock, STATUS)))
    return out


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop(names: Iterable[str] | None = None, wait_s: float = 10.0) -> list[tuple[WorkerEntry, str]]:
    """Stop this user's warm workers: each stops taking connections and exits once its open sessions end.

    Returns each worker with what became of it: ``stopped``, ``stopping`` (sessions still open
    after `wait_s`) or ``stale`` (nobody answered; its socket removed)."""
    out = []
    for entry in workers(names):
        if entry.status is None:
            with contextlib.suppress(FileNotFoundError):
                entry.socket.unlink()
            out.append((entry, "stale"))
            continue
        answer = ask(entry.socket, SHUTDOWN)
        pid = int((answer or entry.status)["pid"])
        deadline = time.monotonic() + wait_s
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        out.append((entry, "stopped" if _gone(pid) else "stopping"))
    return out


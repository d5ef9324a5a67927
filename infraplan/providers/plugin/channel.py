"""The host's end of the JSON-RPC protocol: calls over one line stream to a plugin worker.

`RpcChannel` multiplexes: many engine threads may wait on one worker at once, each
call bounded by its time limit (past it: ``$/cancelRequest`` and `ProviderTimeout`,
or `ReadTimeout` for calls that change nothing). Its transports: `PluginProcess`, a
one-shot worker's stdin/stdout, and `infraplan.providers.plugin.warm.WarmSession`, a
connection to a warm worker's socket.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from infraplan.errors import ProviderError, ProviderTimeout, ProviderUnavailable, ReadTimeout
from infraplan.models.config import PluginTimeouts
from infraplan.models.types import parse_duration
from infraplan.providers.plugin.protocol import (CANCEL, INITIALIZE, JSONRPC, METHODS, PROTOCOL_VERSION, ErrorCode,
                                                 decode, dumps, notification, request)

#: seconds for a method `PluginTimeouts` does not name
DEFAULT_TIMEOUT_S = 300.0

log = logging.getLogger("infraplan.providers.plugin.host")

BOOTSTRAP = """\
import importlib.util, json, sys
spec = json.loads(sys.argv[1])
for name, path in spec["packages"].items():
    s = importlib.util.spec_from_file_location(name, path + "/__init__.py", submodule_search_locations=[path])
    m = importlib.util.module_from_spec(s); sys.modules[name] = m; s.loader.exec_module(m)
from infraplan.providers.plugin.worker import serve
serve(spec)
"""


def _outcome(msg: dict[str, Any]) -> str:
    """`ok`, or `error CODE TYPE` (never the message: it may quote attributes) for the debug log."""
    if "error" not in msg:
        return "ok"
    err = msg["error"] if isinstance(msg["error"], dict) else {}
    data = err.get("data") if isinstance(err.get("data"), dict) else {}
    return f"error {err.get('code')} {data.get('type', '')}".rstrip()


def decode_error(err: dict[str, Any], plugin: str) -> BaseException:
    """A JSON-RPC error as an exception here: a provider's infraplan exception as the same class."""
    import importlib

    from infraplan.errors import InfraplanError

    data = err.get("data") if isinstance(err.get("data"), dict) else None
    if err.get("code") != ErrorCode.PROVIDER_ERROR or data is None:
        return ProviderError(f"{plugin} plugin: {err.get('message', 'error')} (JSON-RPC error {err.get('code')})")
    module, _, qualname = str(data.get("type", "")).partition(":")
    if data.get("ours"):
        try:
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except Exception:  # noqa: BLE001 - a class only the worker has: fall through
            cls = None
        if isinstance(cls, type) and issubclass(cls, InfraplanError):
            exc = cls.__new__(cls)
            Exception.__init__(exc, data.get("message", ""))
            exc.__dict__.update(data.get("attrs") or {})
            return exc
        return ProviderError(data.get("message", ""))
    return ProviderError(f"{plugin} plugin: {qualname or 'error'}: {data.get('message', '')}")


def timeouts_s(timeouts: PluginTimeouts | None) -> dict[str, float]:
    """Seconds per method (the block's `plugin_timeouts`, else the defaults)."""
    return {method: parse_duration(value) for method, value in (timeouts or PluginTimeouts()).model_dump().items()}


class _NotJsonRpc(ProviderError):
    """An answer without ``"jsonrpc": "2.0"``: a worker of protocol version 1."""


class ConnectionLost(ProviderError):
    """The worker's end closed while calls were waiting."""


class RpcChannel:
    """Thread-safe JSON-RPC `call`s to one worker, each bounded by its timeout; the transport is the subclass's."""

    #: what the worker is, in messages ("plugin process", "warm plugin worker")
    what = "plugin process"

    def __init__(self, name: str, log_path: Path, timeouts: dict[str, float] | None = None):
        self.name = name
        self.log_path = log_path
        self.timeouts = timeouts or timeouts_s(None)
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    # -- the transport -------------------------------------------------------------
    def _open(self) -> tuple[Iterable[bytes], Callable[[], str]]:
        """Start or reach the worker (the lock is held): the lines it sends, and what to say once they end
        (`_read` calls it after the last line: it may wait for the worker's exit)."""
        raise NotImplementedError

    def _is_open(self) -> bool:
        raise NotImplementedError

    def _is_gone(self) -> bool:
        """Whether an opened worker is known to be gone (a process that exited)."""
        return False

    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def _disconnect(self, timeout: float) -> None:
        raise NotImplementedError

    # -- the protocol --------------------------------------------------------------
    def _start_reader(self, opened: tuple[Iterable[bytes], Callable[[], str]]) -> None:
        self._reader = threading.Thread(target=self._read, args=opened, name=f"plugin-{self.name}", daemon=True)
        self._reader.start()

    def _read(self, lines: Iterable[bytes], ended: Callable[[], str]) -> None:
        try:
            for line in lines:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                with self._lock:
                    fut = self._pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
                if fut is None:  # a late answer to a call that timed out, or an id-less error
                    continue
                log.debug("plugin %s: response #%s: %s", self.name, msg.get("id"), _outcome(msg))
                if msg.get("jsonrpc") != JSONRPC:
                    fut.set_exception(_NotJsonRpc(msg))
                elif "error" in msg:
                    fut.set_exception(decode_error(msg["error"] if isinstance(msg["error"], dict) else {}, self.name))
                else:
                    fut.set_result(decode(msg.get("result")))
        except (OSError, ValueError):  # the connection reset, or closed under us
            pass
        why = ended()
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            err = ConnectionLost(f"the {self.name} {why} during a call; {self._log_tail()}")
            for fut in pending.values():
                fut.set_exception(err)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            tail = []
        return f"see {self.log_path}" + (": " + " | ".join(tail) if tail else "")

    def _write(self, msg: dict[str, Any]) -> None:
        """Send one message; the caller holds the lock."""
        self._send((dumps(msg) + "\n").encode())

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """``method(**params)`` in the worker; past its timeout the call is cancelled and ProviderTimeout raised."""
        limit = self.timeouts.get(method, DEFAULT_TIMEOUT_S) if timeout is None else timeout
        fut: Future = Future()
        with self._lock:
            if not self._is_open():
                self._start_reader(self._open())
            elif self._is_gone():
                raise ProviderError(f"the {self.name} {self.what} is gone; {self._log_tail()}")
            ident = next(self._ids)
            self._pending[ident] = fut
            try:
                log.debug("plugin %s: request #%d %s", self.name, ident, method)
                self._write(request(ident, method, params or {}))
            except (BrokenPipeError, OSError) as exc:
                self._pending.pop(ident, None)
                raise ConnectionLost(f"the {self.name} {self.what} is gone ({exc}); {self._log_tail()}") from exc
        try:
            return fut.result(timeout=limit)
        except FutureTimeout:
            pass
        with self._lock:
            answered = self._pending.pop(ident, None) is None
            if not answered:
                try:  # the worker stops waiting and drops what the call returns
                    self._write(notification(CANCEL, {"id": ident}))
                except (BrokenPipeError, OSError, AssertionError):
                    pass
        if answered:  # the answer came in between: use it
            return fut.result()
        log.debug("plugin %s: request #%d %s timed out after %gs: cancelled", self.name, ident, method)
        spec = METHODS.get(method)
        if spec is None or spec.changes:
            raise ProviderTimeout(
                f"the {self.name} plugin did not answer {method} within {limit:g}s; the call was cancelled, but "
                f"what it did is unknown: run `infraplan plan` to see what exists (limit: plugin_timeouts.{method})")
        raise ReadTimeout(f"the {self.name} plugin did not answer {method} within {limit:g}s; the call was "
                          f"cancelled (limit: plugin_timeouts.{method})")

    def _initialize_params(self) -> dict[str, Any]:
        from infraplan import __version__

        return {"protocolVersion": PROTOCOL_VERSION, "clientInfo": {"name": "infraplan", "version": __version__}}

    def initialize(self) -> dict[str, Any]:
        """Start the worker and shake hands: its ``initialize`` result, once its protocol version is ours."""
        fix = f"reinstall it with `infraplan plugins install {self.name}`"
        try:
            info = self.call(INITIALIZE, self._initialize_params())
        except _NotJsonRpc:
            info = {"protocolVersion": 1}
        except ProviderTimeout as exc:
            self.close(timeout=1)
            raise ProviderUnavailable(f"the {self.name} plugin did not start: {exc}; {self._log_tail()}") from None
        theirs = info.get("protocolVersion") if isinstance(info, dict) else None
        if theirs != PROTOCOL_VERSION:
            self.close(timeout=5)
            raise ProviderUnavailable(f"the {self.name} plugin speaks plugin protocol version {theirs}, this infraplan "
                                      f"speaks version {PROTOCOL_VERSION}: {fix}")
        return info

    @property
    def started(self) -> bool:
        """Whether a worker was reached (and not closed): closing then says goodbye to it."""
        return self._is_open()

    def close(self, timeout: float = 30.0) -> None:
        """Let the worker finish what runs (unless cancelled) and end the channel."""
        self._disconnect(timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)


class PluginProcess(RpcChannel):
    """A one-shot worker: a process of its own serving one provider instance on its stdin/stdout."""

    def __init__(self, name: str, python: Path, spec: dict[str, Any], log_path: Path,
                 timeouts: dict[str, float] | None = None):
        super().__init__(name, log_path, timeouts)
        self.python = python
        self.spec = spec
        self._proc: subprocess.Popen | None = None

    def _open(self) -> tuple[Iterable[bytes], Callable[[], str]]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        try:
            proc = subprocess.Popen([str(self.python), "-I", "-c", BOOTSTRAP, json.dumps(self.spec)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, env=env)
        except OSError as exc:
            raise ProviderUnavailable(f"cannot start the {self.name} plugin ({self.python}): {exc}") from exc
        finally:
            log_file.close()
        self._proc = proc
        assert proc.stdout is not None
        return proc.stdout, lambda: f"plugin process exited (code {proc.wait()})"

    def _is_open(self) -> bool:
        return self._proc is not None

    def _is_gone(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def _send(self, data: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(data)
        self._proc.stdin.flush()

    def _disconnect(self, timeout: float) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()  # EOF: the worker finishes what runs (unless cancelled) and exits
            proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, OSError):
            proc.kill()
            proc.wait()

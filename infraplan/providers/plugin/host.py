"""Providers in an interpreter of their own: the plugin host.

Some SDKs cannot share an environment with infraplan: SkyPilot 0.14 pins
``click<8.2`` while sqlite-utils 4 needs ``click>=8.3.1``. Like Terraform's provider
plugins, such a provider runs in a separate process, from a virtualenv of its own
(``infraplan plugins install NAME``), and the engine talks to it through
`RemoteProvider`, which has the `Provider` interface::

    engine threads ─ RemoteProvider ─ JSON-RPC 2.0 (stdin/stdout) ─ worker ─ the provider class
                                                                    (plugin venv: the SDK only)

The worker loads infraplan's own package directories by path (infraplan is not
installed in the plugin venv), so both sides normally run the same code; the
``initialize`` handshake still checks the protocol version and refuses a worker of
another one. The handshake also reports the provider's capabilities
(`ListsInstances`, `RunsServices`) and attribute sets: `RemoteProvider.connect`
returns a subclass with the same capability mixins, forwarding their calls.

Calls are multiplexed: many engine threads may wait on the one process at once.
Every call has a time limit (the provider block's `plugin_timeouts`, by method);
past it the host sends ``$/cancelRequest`` and raises `ProviderTimeout` (for calls
that change nothing, `ReadTimeout`, which may be retried). The worker's stderr (SDK
logs, tracebacks) goes to ``RUNTIME_DIR/plugins/NAME.log``. The messages are in
`infraplan.providers.plugin.protocol`.

Which side a provider runs on (`isolation` in its provider block):
``in_process`` always here; ``plugin`` always in the plugin process; ``auto``
(default) here when every module in the class's ``requires`` imports here, else
in the plugin process when one is installed, else here (its first SDK call then
fails with the install hints).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import Future
from enum import StrEnum
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from infraplan.diagnostics import Diagnostic
from infraplan.errors import InfraplanError, ProviderError, ProviderTimeout, ProviderUnavailable, ReadTimeout
from infraplan.models.config import PluginTimeouts
from infraplan.models.types import parse_duration
from infraplan.providers.contract import (Capability, Instance, ListsInstances, Provider, ProviderContext, ProviderPlan,
                                          ReadResult, RunsServices)
from infraplan.providers.plugin.protocol import (CANCEL, INITIALIZE, JSONRPC, METHODS, PROTOCOL_VERSION, ErrorCode,
                                                 decode, dumps, encode, encode_error, notification, request)

__all__ = ["Placement", "PluginProcess", "RemoteProvider", "decode", "decode_error", "encode", "encode_error", "install",
           "placement", "plugin_dir", "plugin_python", "remote_class", "runs_in_plugin"]

#: seconds for a method `PluginTimeouts` does not name
DEFAULT_TIMEOUT_S = 300.0

log = logging.getLogger(__name__)

BOOTSTRAP = """\
import importlib.util, json, sys
spec = json.loads(sys.argv[1])
for name, path in spec["packages"].items():
    s = importlib.util.spec_from_file_location(name, path + "/__init__.py", submodule_search_locations=[path])
    m = importlib.util.module_from_spec(s); sys.modules[name] = m; s.loader.exec_module(m)
from infraplan.providers.plugin.worker import serve
serve(spec)
"""


# -- where plugins live ----------------------------------------------------------
def plugin_root() -> Path:
    """``$INFRAPLAN_PLUGIN_DIR`` or ``~/.infraplan/plugins``."""
    return Path(os.environ.get("INFRAPLAN_PLUGIN_DIR") or Path.home() / ".infraplan" / "plugins")


def plugin_dir(name: str) -> Path:
    return plugin_root() / name


def plugin_python(name: str) -> Path | None:
    """The plugin venv's interpreter, if the plugin is installed."""
    for rel in ("bin/python", "Scripts/python.exe"):
        p = plugin_dir(name) / rel
        if p.exists():
            return p
    return None


def requirements_of(cls: type[Provider]) -> list[str]:
    return list(getattr(cls, "plugin_requirements", ()) or ())


class Placement(StrEnum):
    """Where a provider runs under ``isolation: auto``."""

    IN_PROCESS = "in-process"  # its SDK imports here (or it needs none)
    PLUGIN = "plugin"  # its SDK is missing here and its plugin virtualenv is installed
    NOT_INSTALLED = "not-installed"  # neither: `infraplan plugins install NAME`

    def describe(self, type_name: str) -> str:
        """The words `providers` and `plugins list` show."""
        if self is Placement.NOT_INSTALLED:
            return f"not installed (run: infraplan plugins install {type_name})"
        return self.value


def placement(cls: type[Provider], type_name: str) -> Placement:
    """Where a provider of class `cls` runs with ``isolation: auto``, or that it cannot run at all."""
    needed = tuple(getattr(cls, "requires", ()) or ())
    if all(importlib.util.find_spec(m) is not None for m in needed):
        return Placement.IN_PROCESS
    return Placement.PLUGIN if plugin_python(type_name) is not None else Placement.NOT_INSTALLED


def runs_in_plugin(cls: type[Provider], type_name: str, isolation: str = "auto") -> bool:
    """Whether a provider of class `cls` runs in its plugin process (see the module docstring)."""
    if isolation == "in_process":
        return False
    if isolation == "plugin":
        return True
    return placement(cls, type_name) is Placement.PLUGIN


# -- errors from the wire --------------------------------------------------------
def _outcome(msg: dict[str, Any]) -> str:
    """`ok`, or `error CODE TYPE` (never the message: it may quote attributes) for the debug log."""
    if "error" not in msg:
        return "ok"
    err = msg["error"] if isinstance(msg["error"], dict) else {}
    data = err.get("data") if isinstance(err.get("data"), dict) else {}
    return f"error {err.get('code')} {data.get('type', '')}".rstrip()


def decode_error(err: dict[str, Any], plugin: str) -> BaseException:
    """A JSON-RPC error as an exception here: a provider's infraplan exception as the same class."""
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


# -- the process -----------------------------------------------------------------
class PluginProcess:
    """One worker process serving one provider instance; thread-safe `call`, each bounded by its timeout."""

    def __init__(self, name: str, python: Path, spec: dict[str, Any], log_path: Path,
                 timeouts: dict[str, float] | None = None):
        self.name = name
        self.python = python
        self.spec = spec
        self.log_path = log_path
        self.timeouts = timeouts or timeouts_s(None)
        self._proc: subprocess.Popen | None = None
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def _start(self) -> subprocess.Popen:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        try:
            proc = subprocess.Popen([str(self.python), "-I", "-c", BOOTSTRAP, json.dumps(self.spec)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)
        except OSError as exc:
            raise ProviderUnavailable(f"cannot start the {self.name} plugin ({self.python}): {exc}") from exc
        finally:
            log.close()
        self._reader = threading.Thread(target=self._read, args=(proc,), name=f"plugin-{self.name}", daemon=True)
        self._reader.start()
        return proc

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
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
        code = proc.wait()
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            err = ProviderError(f"the {self.name} plugin process exited (code {code}) during a call; "
                                f"{self._log_tail()}")
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
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((dumps(msg) + "\n").encode())
        self._proc.stdin.flush()

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """``method(**params)`` in the worker; past its timeout the call is cancelled and ProviderTimeout raised."""
        limit = self.timeouts.get(method, DEFAULT_TIMEOUT_S) if timeout is None else timeout
        fut: Future = Future()
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    raise ProviderError(f"the {self.name} plugin process is gone; {self._log_tail()}")
                self._proc = self._start()
            ident = next(self._ids)
            self._pending[ident] = fut
            try:
                log.debug("plugin %s: request #%d %s", self.name, ident, method)
                self._write(request(ident, method, params or {}))
            except (BrokenPipeError, OSError) as exc:
                self._pending.pop(ident, None)
                raise ProviderError(f"the {self.name} plugin process is gone ({exc}); {self._log_tail()}") from exc
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

    def initialize(self) -> dict[str, Any]:
        """Start the worker and shake hands: its ``initialize`` result, once its protocol version is ours."""
        from infraplan import __version__

        fix = f"reinstall it with `infraplan plugins install {self.name}`"
        try:
            info = self.call(INITIALIZE, {"protocolVersion": PROTOCOL_VERSION,
                                          "clientInfo": {"name": "infraplan", "version": __version__}})
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
        """Whether a worker was started (and not closed): closing then says goodbye to it."""
        return self._proc is not None

    def close(self, timeout: float = 30.0) -> None:
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
        if self._reader is not None:
            self._reader.join(timeout=5)


class _NotJsonRpc(ProviderError):
    """An answer without ``"jsonrpc": "2.0"``: a worker of protocol version 1."""


def worker_spec(cls: type[Provider], context: ProviderContext | None) -> dict[str, Any]:
    """What the worker needs: package directories to load, the class, the context."""
    import infraplan

    packages = {"infraplan": str(Path(infraplan.__file__).parent)}
    top = cls.__module__.split(".")[0]
    if top != "infraplan":
        packages[top] = str(Path(sys.modules[top].__file__).parent)
    ctx = None
    if context is not None:
        ctx = {"project_dir": str(context.project_dir), "state_path": str(context.state_path),
               "runtime_dir": str(context.runtime_dir), "settings": context.settings, "name": context.name,
               "lineage": context.lineage}
    preload = [p for p in os.environ.get("INFRAPLAN_PLUGIN_PRELOAD", "").split(os.pathsep) if p]
    return {"packages": packages, "provider": f"{cls.__module__}:{cls.__qualname__}", "context": ctx,
            "preload": preload, "report": [r.split("=")[0].split("<")[0].split(">")[0].split("[")[0].strip()
                                           for r in requirements_of(cls)]}


class RemoteProvider(Provider):
    """A provider served by its plugin process: same interface, same exceptions, same capabilities.

    Made by `RemoteProvider.connect`, as a subclass with the capability mixins the
    worker reported (`remote_class`), so ``isinstance(p, ListsInstances)`` holds for a
    plugin exactly when it holds for the provider class.
    """

    def __init__(self, cls: type[Provider], context: ProviderContext, process: PluginProcess,
                 info: dict[str, Any]):
        super().__init__(context)
        self.cls = cls
        described = info.get("provider") or {}
        self.name = described.get("name") or cls.name
        self.updatable = frozenset(described.get("updatable", cls.updatable))
        self.computed = frozenset(described.get("computed", cls.computed))
        self.concurrent_reads = True  # every read is a round trip to the worker: worth overlapping
        self.process = process
        self.info = info

    @classmethod
    def connect(cls, provider: type[Provider], context: ProviderContext, type_name: str,
                timeouts: PluginTimeouts | None = None) -> RemoteProvider:
        """Start `provider`'s plugin worker, shake hands, and stand in for it with its capabilities."""
        python = plugin_python(type_name)
        if python is None:
            raise ProviderUnavailable(
                f"provider {type_name!r} is set to run as a plugin but none is installed: "
                f"run `infraplan plugins install {type_name}`")
        log_path = Path(context.runtime_dir) / "plugins" / f"{type_name}.log"
        process = PluginProcess(type_name, python, worker_spec(provider, context), log_path, timeouts_s(timeouts))
        info = process.initialize()
        caps = []
        for name in (info.get("provider") or {}).get("capabilities", []):
            try:
                caps.append(Capability(name))
            except ValueError:
                log.debug("plugin %s: capability %r unknown here, ignored", type_name, name)
        return remote_class(tuple(caps))(provider, context, process, info)

    def _call(self, method: str, **params: Any) -> Any:
        return self.process.call(method, params)

    def validate_settings(self) -> list[Diagnostic]:
        return self._call("validate_settings")

    def plan(self, kind, prior, desired) -> ProviderPlan:
        return self._call("plan", kind=kind, prior=prior, desired=desired)

    def estimate(self, kind, attributes):
        return self._call("estimate", kind=kind, attributes=attributes)

    def prepare_create(self, kind, address, attributes):
        return self._call("prepare_create", kind=kind, address=address, attributes=attributes)

    def create(self, kind, address, attributes):
        return self._call("create", kind=kind, address=address, attributes=attributes)

    def read(self, kind, address, attributes) -> ReadResult:
        return self._call("read", kind=kind, address=address, attributes=attributes)

    def update(self, kind, address, prior, desired):
        return self._call("update", kind=kind, address=address, prior=prior, desired=desired)

    def delete(self, kind, address, attributes) -> None:
        self._call("delete", kind=kind, address=address, attributes=attributes)

    def hello(self) -> dict[str, Any]:
        """The worker's interpreter and the versions of the plugin's requirements (from the handshake)."""
        return dict(self.info.get("serverInfo") or {})

    def close(self) -> None:
        try:
            if self.process.started:
                self._call("close")
        except ProviderError:
            pass
        self.process.close()


class _RemoteListsInstances(ListsInstances):
    """`ListsInstances` forwarded to the worker."""

    def list_instances(self) -> list[Instance]:
        return self._call("list_instances")  # type: ignore[attr-defined]

    def delete_instance(self, instance: Instance) -> None:
        self._call("delete_instance", instance=instance)  # type: ignore[attr-defined]


class _RemoteRunsServices(RunsServices):
    """`RunsServices` forwarded to the worker."""

    def service_workers(self, address: str, attributes: dict[str, Any]) -> list[str]:
        return self._call("service_workers", address=address, attributes=attributes)  # type: ignore[attr-defined]

    def create_canary(self, address: str, attributes: dict[str, Any], replicas: int) -> dict[str, Any]:
        return self._call("create_canary", address=address, attributes=attributes,  # type: ignore[attr-defined]
                          replicas=replicas)


_REMOTE_MIXINS: dict[Capability, type] = {Capability.LISTS_INSTANCES: _RemoteListsInstances,
                                          Capability.RUNS_SERVICES: _RemoteRunsServices}


@functools.cache
def remote_class(capabilities: tuple[Capability, ...]) -> type[RemoteProvider]:
    """`RemoteProvider` with the forwarding mixin of each capability (one class per set)."""
    caps = tuple(c for c in Capability if c in capabilities)  # one order: one class per set
    if not caps:
        return RemoteProvider
    return type(f"RemoteProvider[{','.join(caps)}]", (*(_REMOTE_MIXINS[c] for c in caps), RemoteProvider),
                {"__module__": __name__, "__doc__": f"A plugin provider with {', '.join(caps)}."})


# -- installing ------------------------------------------------------------------
def install(type_name: str, cls: type[Provider], *, python: str | None = None, upgrade: bool = False,
            echo=print) -> dict[str, Any]:
    """Create (or update) the plugin venv for `type_name` and check that it serves."""
    reqs = requirements_of(cls)
    if not reqs:
        raise ProviderUnavailable(f"provider {type_name!r} needs no plugin environment: it runs in-process")
    target = plugin_dir(type_name)
    if plugin_python(type_name) is None:
        echo(f"creating {target}")
        _run([python or sys.executable, "-m", "venv", str(target)])
    py = plugin_python(type_name)
    assert py is not None
    echo(f"installing {' '.join(reqs)} into {target}")
    _run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          *(["--upgrade"] if upgrade else []), *reqs])
    (target / "infraplan-plugin.json").write_text(json.dumps({"provider": type_name, "requirements": reqs}) + "\n")
    return check(type_name, cls)


def check(type_name: str, cls: type[Provider]) -> dict[str, Any]:
    """Start the installed plugin once and ask it what it runs."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="infraplan-plugin-") as tmp:
        ctx = ProviderContext(project_dir=Path(tmp), state_path=Path(tmp) / "infraplan.db", runtime_dir=Path(tmp))
        remote = RemoteProvider.connect(cls, ctx, type_name)
        try:
            return remote.hello()
        finally:
            remote.close()


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ProviderUnavailable(f"{' '.join(argv[:4])} ... failed (exit {proc.returncode}): " + " | ".join(tail))

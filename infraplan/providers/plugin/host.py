"""Providers in an interpreter of their own: the plugin host.

Some SDKs cannot share an environment with infraplan: SkyPilot 0.14 pins
``click<8.2`` while sqlite-utils 4 needs ``click>=8.3.1``. Like Terraform's provider
plugins, such a provider runs in a separate process, from a virtualenv of its own
(``infraplan plugins install NAME``), and the engine talks to it through
`RemoteProvider`, which has the `Provider` interface::

    engine threads ─ RemoteProvider ─ JSON lines (stdin/stdout) ─ plugin_worker ─ the provider class
                                                                    (plugin venv: the SDK only)

The worker loads infraplan's own package directories by path (infraplan is not
installed in the plugin venv), so both sides always run the same code. Calls are
multiplexed: many engine threads may wait on the one process at once. The
worker's stderr (SDK logs, tracebacks) goes to ``RUNTIME_DIR/plugins/NAME.log``.

Which side a provider runs on (`isolation` in its provider block):
``in_process`` always here; ``plugin`` always in the plugin process; ``auto``
(default) here when every module in the class's ``requires`` imports here, else
in the plugin process when one is installed, else here (its first SDK call then
fails with the install hints).
"""

from __future__ import annotations

import dataclasses
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
from pathlib import Path
from typing import Any

from infraplan.diagnostics import Diagnostic, Location
from infraplan.errors import InfraplanError, ProviderError, ProviderUnavailable
from infraplan.providers.contract import Provider, ProviderContext, ProviderPlan, ReadResult

#: Provider methods the worker serves (plus "hello").
METHODS = frozenset({"validate_settings", "plan", "estimate", "prepare_create", "create", "read", "update",
                     "delete", "service_workers", "create_canary", "close"})
_DATACLASSES = {c.__name__: c for c in (ProviderPlan, ReadResult, Diagnostic, Location)}

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


def runs_in_plugin(cls: type[Provider], type_name: str, isolation: str = "auto") -> bool:
    """Whether a provider of class `cls` runs in its plugin process (see the module docstring)."""
    if isolation == "in_process":
        return False
    if isolation == "plugin":
        return True
    needed = tuple(getattr(cls, "requires", ()) or ())
    if all(importlib.util.find_spec(m) is not None for m in needed):
        return False
    return bool(needed) and plugin_python(type_name) is not None


# -- the wire format -------------------------------------------------------------
def encode(value: Any) -> Any:
    """Provider values -> JSON: the contract's dataclasses carry their name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dc__": type(value).__name__,
                **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        kind = value.get("__dc__")
        fields = {k: decode(v) for k, v in value.items() if k != "__dc__"}
        return _DATACLASSES[kind](**fields) if kind in _DATACLASSES else fields
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def encode_error(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    extra = {}
    for k, v in vars(exc).items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        extra[k] = v
    return {"type": f"{cls.__module__}:{cls.__qualname__}", "message": str(exc), "attrs": extra,
            "ours": isinstance(exc, InfraplanError)}


def _outcome(msg: dict[str, Any]) -> str:
    """`ok`, or `error TYPE` (never the message: it may quote attributes) for the debug log."""
    if "error" not in msg:
        return "ok"
    err = msg["error"]
    return f"error {err.get('type') if isinstance(err, dict) else type(err).__name__}"


def decode_error(err: dict[str, Any], plugin: str) -> BaseException:
    """The worker's exception as the same infraplan class here (a ProviderError otherwise)."""
    module, _, qualname = str(err.get("type", "")).partition(":")
    if err.get("ours"):
        try:
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except Exception:  # noqa: BLE001 - a class only the worker has: fall through
            cls = None
        if isinstance(cls, type) and issubclass(cls, InfraplanError):
            exc = cls.__new__(cls)
            Exception.__init__(exc, err.get("message", ""))
            exc.__dict__.update(err.get("attrs") or {})
            return exc
        return ProviderError(err.get("message", ""))
    return ProviderError(f"{plugin} plugin: {qualname or 'error'}: {err.get('message', '')}")


# -- the process -----------------------------------------------------------------
class PluginProcess:
    """One worker process serving one provider instance; thread-safe `call`."""

    def __init__(self, name: str, python: Path, spec: dict[str, Any], log_path: Path):
        self.name = name
        self.python = python
        self.spec = spec
        self.log_path = log_path
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
            with self._lock:
                fut = self._pending.pop(msg.get("id"), None)
            if fut is None:
                continue
            log.debug("plugin %s: response #%s: %s", self.name, msg.get("id"), _outcome(msg))
            if "error" in msg:
                fut.set_exception(decode_error(msg["error"], self.name))
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

    def call(self, method: str, *args: Any) -> Any:
        fut: Future = Future()
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    raise ProviderError(f"the {self.name} plugin process is gone; {self._log_tail()}")
                self._proc = self._start()
            ident = next(self._ids)
            self._pending[ident] = fut
            data = json.dumps({"id": ident, "method": method, "args": encode(list(args))}, default=str) + "\n"
            try:
                assert self._proc.stdin is not None
                log.debug("plugin %s: request #%d %s", self.name, ident, method)
                self._proc.stdin.write(data.encode())
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                self._pending.pop(ident, None)
                raise ProviderError(f"the {self.name} plugin process is gone ({exc}); {self._log_tail()}") from exc
        return fut.result()

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
                proc.stdin.close()  # EOF: the worker finishes what runs and exits
            proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, OSError):
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)


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
               "runtime_dir": str(context.runtime_dir), "settings": context.settings, "name": context.name}
    preload = [p for p in os.environ.get("INFRAPLAN_PLUGIN_PRELOAD", "").split(os.pathsep) if p]
    return {"packages": packages, "provider": f"{cls.__module__}:{cls.__qualname__}", "context": ctx,
            "preload": preload, "report": [r.split("=")[0].split("<")[0].split(">")[0].split("[")[0].strip()
                                           for r in requirements_of(cls)]}


class RemoteProvider(Provider):
    """A provider served by its plugin process; same interface, same exceptions."""

    def __init__(self, cls: type[Provider], context: ProviderContext, type_name: str):
        super().__init__(context)
        self.cls = cls
        self.name = cls.name
        self.updatable = cls.updatable
        self.computed = cls.computed
        self.concurrent_reads = True  # every read is a round trip to the worker
        python = plugin_python(type_name)
        if python is None:
            raise ProviderUnavailable(
                f"provider {type_name!r} is set to run as a plugin but none is installed: "
                f"run `infraplan plugins install {type_name}`")
        log = Path(context.runtime_dir) / "plugins" / f"{type_name}.log"
        self.process = PluginProcess(type_name, python, worker_spec(cls, context), log)

    def validate_settings(self) -> list[Diagnostic]:
        return self.process.call("validate_settings")

    def plan(self, prior, desired) -> ProviderPlan:
        return self.process.call("plan", prior, desired)

    def estimate(self, attributes):
        return self.process.call("estimate", attributes)

    def prepare_create(self, address, attributes):
        return self.process.call("prepare_create", address, attributes)

    def create(self, address, attributes):
        return self.process.call("create", address, attributes)

    def read(self, address, attributes) -> ReadResult:
        return self.process.call("read", address, attributes)

    def update(self, address, prior, desired):
        return self.process.call("update", address, prior, desired)

    def delete(self, address, attributes) -> None:
        self.process.call("delete", address, attributes)

    def service_workers(self, address, attributes):
        return self.process.call("service_workers", address, attributes)

    def create_canary(self, address, attributes, replicas):
        return self.process.call("create_canary", address, attributes, replicas)

    def hello(self) -> dict[str, Any]:
        """The worker's interpreter and the versions of the plugin's requirements."""
        return self.process.call("hello")

    def close(self) -> None:
        try:
            if self.process.started:
                self.process.call("close")
        except ProviderError:
            pass
        self.process.close()


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
        remote = RemoteProvider(cls, ctx, type_name)
        try:
            return remote.hello()
        finally:
            remote.close()


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ProviderUnavailable(f"{' '.join(argv[:4])} ... failed (exit {proc.returncode}): " + " | ".join(tail))

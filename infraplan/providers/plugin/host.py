"""Providers in an interpreter of their own: the plugin host.

Some SDKs cannot share an environment with infraplan: SkyPilot 0.14 pins
``click<8.2`` while sqlite-utils 4 needs ``click>=8.3.1``. Like Terraform's provider
plugins, such a provider runs in a separate process, from a virtualenv of its own
(``infraplan plugins install NAME``), and the engine talks to it through
`RemoteProvider`, which has the `Provider` interface::

    engine threads ─ RemoteProvider ─ JSON-RPC 2.0 ─ worker ─ the provider class
                                                      (plugin venv: the SDK only)

The channel (`infraplan.providers.plugin.channel`) is a one-shot worker's stdin/stdout
(`PluginProcess`, a process per command) or a session with a warm worker that outlives
the command (`infraplan.providers.plugin.warm`: a private UNIX socket, one provider
instance per connection); `INFRAPLAN_PLUGIN_KEEP` chooses, warm by default except in CI.

The worker loads infraplan's own package directories by path (infraplan is not
installed in the plugin venv), so both sides normally run the same code; the
``initialize`` handshake still checks the protocol version and refuses a worker of
another one. The handshake also reports the provider's capabilities
(`ListsInstances`, `RunsServices`) and attribute sets: `RemoteProvider.connect`
returns a subclass with the same capability mixins, forwarding their calls.

Calls are multiplexed: many engine threads may wait on the one worker at once.
Every call has a time limit (the provider block's `plugin_timeouts`, by method);
past it the host sends ``$/cancelRequest`` and raises `ProviderTimeout` (for calls
that change nothing, `ReadTimeout`, which may be retried). A one-shot worker's stderr
(SDK logs, tracebacks) goes to ``RUNTIME_DIR/plugins/NAME.log``; a warm worker has its own
log beside its socket, which that file names. The messages are in
`infraplan.providers.plugin.protocol`.

Which side a provider runs on (`isolation` in its provider block):
``in_process`` always here; ``plugin`` always in the plugin process; ``auto``
(default) here when every module in the class's ``requires`` imports here, else
in the plugin process when one is installed, else here (its first SDK call then
fails with the install hints).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

from infraplan.diagnostics import Diagnostic
from infraplan.errors import ProviderError, ProviderUnavailable
from infraplan.models.config import PluginTimeouts
from infraplan.providers.contract import (Capability, Instance, ListsInstances, Provider, ProviderContext, ProviderPlan,
                                          ReadResult, RunsServices)
from infraplan.providers.plugin import warm
from infraplan.providers.plugin.channel import (BOOTSTRAP, DEFAULT_TIMEOUT_S, PluginProcess, RpcChannel, decode_error,
                                                timeouts_s)
from infraplan.providers.plugin.location import plugin_dir, plugin_python, plugin_root
from infraplan.providers.plugin.protocol import decode, encode, encode_error

__all__ = ["BOOTSTRAP", "DEFAULT_TIMEOUT_S", "Placement", "PluginProcess", "RemoteProvider", "decode", "decode_error",
           "encode", "encode_error", "install", "placement", "plugin_dir", "plugin_python", "plugin_root", "remote_class",
           "runs_in_plugin", "timeouts_s"]

log = logging.getLogger(__name__)

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

    def __init__(self, cls: type[Provider], context: ProviderContext, process: RpcChannel,
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
                timeouts: PluginTimeouts | None = None, *, keep: bool | None = None) -> RemoteProvider:
        """Reach `provider`'s plugin worker, shake hands, and stand in for it with its capabilities.

        `keep` (default: `warm.keep_warm`, from the environment): a session with a warm worker
        (started if none runs), else a one-shot worker process of its own."""
        python = plugin_python(type_name)
        if python is None:
            raise ProviderUnavailable(
                f"provider {type_name!r} is set to run as a plugin but none is installed: "
                f"run `infraplan plugins install {type_name}`")
        log_path = Path(context.runtime_dir) / "plugins" / f"{type_name}.log"
        spec = worker_spec(provider, context)
        process: RpcChannel
        if warm.keep_warm() if keep is None else keep:
            process = warm.WarmSession(type_name, python, spec, provider.warm_key(), timeouts_s(timeouts))
        else:
            process = PluginProcess(type_name, python, spec, log_path, timeouts_s(timeouts))
        info = process.initialize()
        if isinstance(process, warm.WarmSession):
            _note_warm(log_path, process)
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


def _note_warm(log_path: Path, session: warm.WarmSession) -> None:
    """Where this run's plugin output went: one line in the log beside the state (a warm worker has its own)."""
    from datetime import datetime, timezone

    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} served by the warm plugin worker "
                    f"pid {session.pid} (its log: {session.log_path})\n")
    except OSError:
        pass


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
        remote = RemoteProvider.connect(cls, ctx, type_name, keep=False)  # a fresh process: the installed code
        try:
            return remote.hello()
        finally:
            remote.close()


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ProviderUnavailable(f"{' '.join(argv[:4])} ... failed (exit {proc.returncode}): " + " | ".join(tail))

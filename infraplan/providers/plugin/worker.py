"""The plugin worker: serves one provider instance over JSON-RPC 2.0 (see `infraplan.providers.plugin.protocol`).

Runs inside the plugin's own virtualenv, started by `PluginProcess` with the
bootstrap that loads infraplan's packages by path. A `Session` is one provider
instance and its calls; the one-shot worker (`serve`) has one, over its stdin and
stdout, and the warm worker (`infraplan.providers.plugin.warm_worker`) one per
connection. Requests arrive one a line; `initialize` is answered at once (protocol version, the provider's
capabilities), every other request runs on a thread of its own and its response goes
back on the same channel (the one-shot worker's original stdout). Anything else writing to stdout (SDK log streams) is sent to
stderr, so it cannot corrupt the channel. SIGINT is ignored: the engine decides what
an interrupt means and closes the channel.

Cancellation (``$/cancelRequest``, sent by the host when a call passes its time
limit): the worker answers the request at once with a ``REQUEST_CANCELLED`` error
and drops whatever the call returns later. It cannot stop the provider code
itself (a Python thread cannot be killed): a SkyPilot launch already submitted goes
on, which is why the host never retries a timed-out create. EOF on stdin: finish
the calls still wanted, then exit (cancelled calls do not hold the process).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import threading
import traceback
from importlib import import_module, metadata
from pathlib import Path
from typing import Any, Callable

from infraplan.providers.contract import CAPABILITY_MIXINS, Provider, ProviderContext, ResourceKind, capabilities_of
from infraplan.providers.plugin import protocol
from infraplan.providers.plugin.protocol import ErrorCode


def _channel():
    """The protocol stream (a dup of stdout); fd 1 then points at stderr."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def make_provider(target: str, c: dict[str, Any] | None) -> Provider:
    """An instance of the provider class `target` (``module:Qual.Name``) for the context `c` (as `worker_spec` sends it)."""
    module, _, qualname = target.partition(":")
    cls: Any = import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    c = c or {}
    ctx = ProviderContext(project_dir=Path(c.get("project_dir", ".")), state_path=Path(c.get("state_path", "x.db")),
                          runtime_dir=Path(c.get("runtime_dir", ".")), settings=c.get("settings") or {},
                          name=c.get("name", ""), lineage=c.get("lineage", ""))
    return cls(ctx)


def run_preloads(spec: dict[str, Any]) -> None:
    for path in spec.get("preload", []):  # test seams, e.g. a fake SDK at the boundary
        runpy.run_path(path, run_name="__infraplan_preload__")


def _server_info(spec: dict[str, Any]) -> dict[str, Any]:
    versions = {}
    for dist in spec.get("report", []):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"python": sys.version.split()[0], "executable": sys.executable, "pid": os.getpid(),
            "versions": versions}


def describe(provider: Provider) -> dict[str, Any]:
    """What the host needs to stand in for `provider`: its capabilities and attribute sets."""
    return {"name": provider.name, "capabilities": [str(c) for c in capabilities_of(provider)],
            "updatable": sorted(provider.updatable), "computed": sorted(provider.computed)}


class _Calls:
    """Requests running now; each is answered once (by its thread, or by a cancel)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._running: dict[Any, str] = {}

    def start(self, ident: Any, method: str) -> None:
        with self._lock:
            self._running[ident] = method

    def finish(self, ident: Any) -> bool:
        """The call is done: True when it is still to be answered (it was not cancelled)."""
        with self._lock:
            wanted = self._running.pop(ident, None) is not None
            self._lock.notify_all()
            return wanted

    def cancel(self, ident: Any) -> str | None:
        """The method of a running call, now answered as cancelled; None if none runs under `ident`."""
        with self._lock:
            method = self._running.pop(ident, None)
            self._lock.notify_all()
            return method

    def wait_idle(self) -> None:
        with self._lock:
            self._lock.wait_for(lambda: not self._running)


def _invoke(provider: Provider, method: str, params: Any) -> Any:
    """Call `method` with the request's named params; ValueError for bad params."""
    spec = protocol.METHODS[method]
    params = params if isinstance(params, dict) else {}
    missing = [p for p in spec.params if p not in params]
    if missing:
        raise ValueError(f"{method}: missing params {', '.join(missing)}")
    args = [protocol.decode(params[p]) for p in spec.params]
    if spec.params[:1] == ("kind",):
        args[0] = ResourceKind(args[0])
    return getattr(provider, method)(*args)


Control = Callable[[Any], Any]


class Session:
    """One JSON-RPC session: one provider instance and its running calls, answered through `send`.

    The one-shot worker has one, over stdin/stdout, its provider made from the process spec
    before the first message. The warm worker (`warm_worker`) has one per connection, its
    provider made at ``initialize`` from the request's ``session`` (class and context), so no
    two connections share an instance. `control` methods (the warm worker's ``$/status``,
    ``$/shutdown``) are answered before ``initialize`` too.
    """

    def __init__(self, spec: dict[str, Any], send: Callable[[dict[str, Any]], None], provider: Provider | None = None,
                 control: dict[str, Control] | None = None):
        self.spec = spec
        self.send = send
        self.provider = provider
        self.control = control or {}
        self.calls = _Calls()
        self.initialized = False
        self.closed = False  # the host called `close`

    def _answer(self, ident: Any, method: str, params: Any) -> None:
        assert self.provider is not None
        try:
            msg = protocol.result(ident, _invoke(self.provider, method, params))
        except ValueError as exc:
            msg = protocol.error(ident, ErrorCode.INVALID_PARAMS, str(exc))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            if not getattr(exc, "exit_code", None):
                traceback.print_exc(file=sys.stderr)
            msg = protocol.error(ident, ErrorCode.PROVIDER_ERROR, str(exc), protocol.encode_error(exc))
        if method == "close":
            self.closed = True
        if self.calls.finish(ident):
            self.send(msg)
        else:
            print(f"infraplan plugin: {method} (request {ident}) ended after it was cancelled; its outcome "
                  "was dropped", file=sys.stderr, flush=True)

    def _served(self, method: str) -> bool:
        m = protocol.METHODS.get(method)
        return m is not None and (m.capability is None or isinstance(self.provider, CAPABILITY_MIXINS[m.capability]))

    def _initialize(self, ident: Any, params: Any) -> None:
        if self.provider is None:  # a warm worker's connection: the host says which provider, for which context
            session = params.get("session") if isinstance(params, dict) else None
            if not isinstance(session, dict) or not isinstance(session.get("provider"), str):
                self.send(protocol.error(ident, ErrorCode.INVALID_PARAMS, "initialize: a warm worker needs the "
                                         "session (provider and context)"))
                return
            try:
                self.provider = make_provider(session["provider"], session.get("context"))
            except BaseException as exc:  # noqa: BLE001 - the host reports it
                traceback.print_exc(file=sys.stderr)
                self.send(protocol.error(ident, ErrorCode.PROVIDER_ERROR, str(exc), protocol.encode_error(exc)))
                return
        self.initialized = True
        self.send(protocol.result(ident, {"protocolVersion": protocol.PROTOCOL_VERSION,
                                          "serverInfo": _server_info(self.spec), "provider": describe(self.provider)}))

    def handle(self, line: str) -> None:
        """One message from the host."""
        try:
            msg = json.loads(line)
        except ValueError:
            self.send(protocol.error(None, ErrorCode.PARSE_ERROR, "not JSON"))
            return
        if not isinstance(msg, dict) or msg.get("jsonrpc") != protocol.JSONRPC or not isinstance(msg.get("method"),
                                                                                                  str):
            self.send(protocol.error(msg.get("id") if isinstance(msg, dict) else None, ErrorCode.INVALID_REQUEST,
                                     "not a JSON-RPC 2.0 request"))
            return
        method, ident, params = msg["method"], msg.get("id"), msg.get("params")
        if "id" not in msg:  # a notification: never answered
            if method == protocol.CANCEL and isinstance(params, dict):
                cancelled = self.calls.cancel(params.get("id"))
                if cancelled is not None:
                    self.send(protocol.error(params.get("id"), ErrorCode.REQUEST_CANCELLED,
                                             f"{cancelled} cancelled by the host"))
            return
        if method == protocol.INITIALIZE:
            self._initialize(ident, params)
        elif method in self.control:
            self.send(protocol.result(ident, self.control[method](params)))
        elif not self.initialized:
            self.send(protocol.error(ident, ErrorCode.NOT_INITIALIZED, f"{method} before initialize"))
        elif not self._served(method):
            assert self.provider is not None
            self.send(protocol.error(ident, ErrorCode.METHOD_NOT_FOUND, f"the {self.provider.name} provider has no "
                                     f"method {method!r}"))
        else:
            self.calls.start(ident, method)
            threading.Thread(target=self._answer, args=(ident, method, params), name=f"plugin-{method}-{ident}",
                             daemon=True).start()

    def finish(self) -> None:
        """The host is gone: wait for the calls still wanted (cancelled ones do not hold it)."""
        self.calls.wait_idle()


def line_sender(out) -> Callable[[dict[str, Any]], None]:
    """`send` for a text stream: one message a line, whole lines from any thread."""
    lock = threading.Lock()

    def send(msg: dict[str, Any]) -> None:
        line = protocol.dumps(msg)
        with lock:
            out.write(line + "\n")
            out.flush()

    return send


def serve(spec: dict[str, Any]) -> None:
    """The one-shot worker: one session over stdin/stdout, for the provider and context in `spec`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = _channel()
    run_preloads(spec)
    session = Session(spec, line_sender(out), make_provider(spec["provider"], spec.get("context")))
    for line in sys.stdin:
        session.handle(line)
    session.finish()

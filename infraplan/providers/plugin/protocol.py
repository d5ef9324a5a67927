"""The plugin wire protocol: JSON-RPC 2.0 over the worker's stdin/stdout, one message a line.

Shared by the host (`host`) and the worker (`worker`)::

    -> {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": 2, "clientInfo": {"name": "infraplan", "version": "0.x"}}}
    <- {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": 2, "serverInfo": {...},
        "provider": {"name": "skypilot", "capabilities": ["runs_services"], "updatable": [...], "computed": [...]}}}
    -> {"jsonrpc": "2.0", "id": 2, "method": "create",
        "params": {"kind": "replica", "address": "fleet.chat[0]", "attributes": {...}}}
    <- {"jsonrpc": "2.0", "id": 2, "result": {...}}
    <- {"jsonrpc": "2.0", "id": 3, "error": {"code": -32000, "message": "...",
        "data": {"type": "infraplan.errors:ProviderError", "attrs": {...}, "ours": true}}}
    -> {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 4}}   (a notification: no id)

The same messages run over a pipe to a one-shot worker (its stdin/stdout) and over a
connection to a warm worker (`infraplan.providers.plugin.warm_worker`, a UNIX socket).
On a connection, `initialize` also names the session's provider and context, which the
one-shot worker got on its command line::

    -> {..., "method": "initialize", "params": {"protocolVersion": 2, "clientInfo": {...},
        "session": {"provider": "infraplan_providers.skypilot.provider:SkyPilotProvider",
                    "context": {"project_dir": "/abs", "state_path": "/abs/s.db", ...}}}}

and a warm worker answers two requests of its own at any time: ``$/status`` (its pid,
sessions, idle time) and ``$/shutdown`` (stop taking connections, exit once the open
sessions end).

`initialize` comes first; the host refuses a worker whose ``protocolVersion`` is not
its own. Params are by name (`METHODS` lists each method's, in call order). The
contract's dataclasses travel tagged with ``__dc__`` (their class name); provider
exceptions travel as error ``data`` and are raised again on the host as the same
infraplan class.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from infraplan.diagnostics import Diagnostic, Location
from infraplan.errors import InfraplanError
from infraplan.providers.contract import Capability, Instance, ProviderPlan, ReadResult

#: Bumped on any change to the messages; a worker of another version is refused.
#: 1 was the JSON-lines format before JSON-RPC (``{"id", "method", "args"}``).
PROTOCOL_VERSION = 2
JSONRPC = "2.0"
INITIALIZE = "initialize"
CANCEL = "$/cancelRequest"
STATUS = "$/status"  # warm worker only
SHUTDOWN = "$/shutdown"  # warm worker only


class ErrorCode(IntEnum):
    """JSON-RPC error codes (the spec's, LSP's for not-initialized and cancelled, one of ours)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    NOT_INITIALIZED = -32002
    REQUEST_CANCELLED = -32800
    PROVIDER_ERROR = -32000  # the provider raised: `data` holds the exception's class and fields


@dataclass(frozen=True)
class Method:
    """One provider call on the wire."""

    params: tuple[str, ...]  # by name on the wire, positional in the provider call
    changes: bool  # changes something real: after a timeout its effect is unknown, it is not asked again
    capability: Capability | None = None  # served only by providers with this capability


METHODS: dict[str, Method] = {
    "validate_settings": Method((), changes=False),
    "plan": Method(("kind", "prior", "desired"), changes=False),
    "estimate": Method(("kind", "attributes"), changes=False),
    "prepare_create": Method(("kind", "address", "attributes"), changes=True),
    "create": Method(("kind", "address", "attributes"), changes=True),
    "read": Method(("kind", "address", "attributes"), changes=False),
    "update": Method(("kind", "address", "prior", "desired"), changes=True),
    "delete": Method(("kind", "address", "attributes"), changes=True),
    "list_instances": Method((), changes=False, capability=Capability.LISTS_INSTANCES),
    "delete_instance": Method(("instance",), changes=True, capability=Capability.LISTS_INSTANCES),
    "service_workers": Method(("address", "attributes"), changes=False, capability=Capability.RUNS_SERVICES),
    "create_canary": Method(("address", "attributes", "replicas"), changes=True,
                            capability=Capability.RUNS_SERVICES),
    "close": Method((), changes=False),
}

_DATACLASSES = {c.__name__: c for c in (ProviderPlan, ReadResult, Diagnostic, Location, Instance)}


def request(ident: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": ident, "method": method, "params": encode(params)}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "method": method, "params": params}


def result(ident: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": ident, "result": encode(value)}


def error(ident: Any, code: ErrorCode, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": int(code), "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": JSONRPC, "id": ident, "error": err}


def dumps(msg: dict[str, Any]) -> str:
    return json.dumps(msg, default=str)


# -- values ----------------------------------------------------------------------
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
    """An exception as an error's ``data``: its class, message and JSON-able fields."""
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

"""The plugin worker: serves one provider instance over JSON lines (see `infraplan.providers.plugin.host`).

Runs inside the plugin's own virtualenv, started by `PluginProcess` with the
bootstrap that loads infraplan's packages by path. Requests ``{"id", "method",
"args"}`` arrive on stdin; each runs on a thread of its own and its answer
``{"id", "result"}`` or ``{"id", "error"}`` goes to the original stdout. Anything
else writing to stdout (SDK log streams) is sent to stderr, so it cannot corrupt
the channel. EOF on stdin: finish what runs, then exit. SIGINT is ignored: the
engine decides what an interrupt means and closes the channel.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

from infraplan.providers.plugin.host import METHODS, decode, encode, encode_error
from infraplan.providers.contract import ProviderContext


def _channel():
    """The protocol stream (a dup of stdout); fd 1 then points at stderr."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _provider(spec: dict[str, Any]):
    module, _, qualname = spec["provider"].partition(":")
    cls: Any = import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    c = spec.get("context") or {}
    ctx = ProviderContext(project_dir=Path(c.get("project_dir", ".")), state_path=Path(c.get("state_path", "x.db")),
                          runtime_dir=Path(c.get("runtime_dir", ".")), settings=c.get("settings") or {},
                          name=c.get("name", ""))
    return cls(ctx)


def _hello(spec: dict[str, Any]) -> dict[str, Any]:
    versions = {}
    for dist in spec.get("report", []):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"python": sys.version.split()[0], "executable": sys.executable, "pid": os.getpid(),
            "versions": versions}


def serve(spec: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = _channel()
    write = threading.Lock()
    for path in spec.get("preload", []):  # test seams, e.g. a fake SDK at the boundary
        runpy.run_path(path, run_name="__infraplan_preload__")
    provider = _provider(spec)

    def answer(ident: Any, method: str, args: list) -> None:
        try:
            if method == "hello":
                msg = {"id": ident, "result": _hello(spec)}
            elif method in METHODS:
                msg = {"id": ident, "result": encode(getattr(provider, method)(*decode(args)))}
            else:
                msg = {"id": ident, "error": {"type": "builtins:ValueError", "ours": False,
                                              "message": f"unknown method {method!r}"}}
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            if not getattr(exc, "exit_code", None):
                traceback.print_exc(file=sys.stderr)
            msg = {"id": ident, "error": encode_error(exc)}
        line = json.dumps(msg, default=str)
        with write:
            out.write(line + "\n")
            out.flush()

    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="plugin-call") as pool:
        for line in sys.stdin:
            try:
                req = json.loads(line)
            except ValueError:
                continue
            pool.submit(answer, req.get("id"), str(req.get("method")), req.get("args") or [])

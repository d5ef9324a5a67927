"""Map a fleet's engine block to SGLang 0.5.x `python -m sglang.launch_server` argv.

Arg names are SGLang's `ServerArgs` field names in snake_case (`tp_size` ->
`--tp-size`). They are checked against `server_args_snapshot.json`, a committed
snapshot of SGLang's argument parser (see its `_source` for version and file), so
validation works without SGLang installed.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

from infraplan.diagnostics import did_you_mean
from infraplan.errors import ProviderError

SNAPSHOT_PATH = Path(__file__).with_name("server_args_snapshot.json")

#: Args whose values must never be shown in plans, state history or logs.
SENSITIVE_ARGS: frozenset[str] = frozenset({"api_key"})
REDACTED = "(sensitive)"

#: Set by infraplan from the model and fleet blocks, never from `engine.args`.
RESERVED_ARGS: dict[str, str] = {
    "model_path": "model.source",
    "model": "model.source",
    "revision": "model.revision",
    "served_model_name": "model.served_name",
    "host": "the provider",
    "port": "fleet.port",
}


@functools.cache
def load_snapshot() -> dict[str, Any]:
    """The committed snapshot of SGLang's server-arg parser."""
    return json.loads(SNAPSHOT_PATH.read_text(encoding="utf-8"))


@functools.cache
def _alias_map() -> dict[str, str]:
    """Every accepted spelling (snake_case) of a typed arg -> its snapshot key."""
    aliases: dict[str, str] = {}
    for name, spec in load_snapshot()["args"].items():
        aliases[name] = name
        for opt in spec["options"]:
            aliases.setdefault(opt.lstrip("-").replace("-", "_"), name)
        aliases.setdefault(spec["dest"], name)
    return aliases


def arg_spec(name: str) -> dict[str, Any] | None:
    """The snapshot entry for `name` (or one of its aliases), or None."""
    key = _alias_map().get(name)
    return load_snapshot()["args"][key] if key else None


def model_path_from_source(source: str) -> str:
    """`hf://org/name` -> `org/name`; `file:///p` -> `/p`; a local path stays as it is."""
    if source.startswith("hf://"):
        repo = source[len("hf://") :].strip("/")
        if not repo:
            raise ProviderError(f"model source {source!r} names no Hugging Face repository")
        return repo
    if source.startswith("file://"):
        return source[len("file://") :]
    return source


def _flag(name: str) -> str:
    spec = arg_spec(name)
    return spec["flag"] if spec else "--" + name.replace("_", "-")


def _values(value: Any) -> list[str]:
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, dict):
        return [json.dumps(value, sort_keys=True)]
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return [str(value)]


def build_launch_argv(
    *,
    model_source: str,
    revision: str | None,
    served_name: str | None,
    host: str,
    port: int,
    args: dict[str, Any],
) -> list[str]:
    """The argv that starts one SGLang server for these settings.

    Flags (`enable_metrics: true`) are present when true and absent when false;
    `None` values are left out; lists become several values after one option.
    """
    clash = sorted(n for n in args if n in RESERVED_ARGS)
    if clash:
        raise ProviderError(
            f"engine.args must not set {', '.join(clash)}: infraplan sets "
            + ", ".join(f"{n} from {RESERVED_ARGS[n]}" for n in clash)
        )
    argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", model_path_from_source(model_source)]
    if revision:
        argv += ["--revision", revision]
    if served_name:
        argv += ["--served-model-name", served_name]
    argv += ["--host", host, "--port", str(port)]
    for name, value in args.items():
        if value is None:
            continue
        spec = arg_spec(name)
        is_flag = spec["type"] == "flag" if spec else isinstance(value, bool)
        if is_flag:
            if value:
                argv.append(_flag(name))
            continue
        argv += [_flag(name), *_values(value)]
    return argv


def redact_args(args: dict[str, Any]) -> dict[str, Any]:
    """A copy of `args` with sensitive values replaced by "(sensitive)"."""
    return {k: (REDACTED if k in SENSITIVE_ARGS and v is not None else v) for k, v in args.items()}


def redact_argv(argv: list[str]) -> list[str]:
    """A copy of `argv` with the value after each sensitive option replaced."""
    sensitive = {o for n in SENSITIVE_ARGS if (s := arg_spec(n)) for o in s["options"]}
    out = list(argv)
    for i, tok in enumerate(out[:-1]):
        if tok in sensitive:
            out[i + 1] = REDACTED
    return out


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "flag":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind.startswith("list["):
        inner = kind[5:-1]
        return isinstance(value, list) and all(_type_ok(inner, v) for v in value)
    return True


def validate_args(args: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems with `engine.args`, as (arg name, message); empty when all is well."""
    snap = load_snapshot()
    version = snap["_source"]["version"]
    all_names = set(snap["all_names"])
    problems: list[tuple[str, str]] = []
    for name, value in args.items():
        if name in RESERVED_ARGS:
            problems.append((name, f"set by infraplan from {RESERVED_ARGS[name]}; remove it from engine.args"))
            continue
        spec = arg_spec(name)
        if spec is None:
            if name not in all_names:
                msg = f"unknown SGLang {version} server arg {name!r}"
                msg += did_you_mean(name, sorted(all_names | set(_alias_map())))
                problems.append((name, msg))
            continue  # a real arg the snapshot has no type for
        if value is None:
            continue
        kind = spec["type"]
        if name.startswith("json_") and isinstance(value, dict):
            continue
        if not _type_ok(kind, value):
            want = "true or false" if kind == "flag" else f"a {kind}"
            problems.append((name, f"expects {want}, got {type(value).__name__} {value!r}"))
            continue
        choices = spec.get("choices")
        if choices:
            for v in value if isinstance(value, list) else [value]:
                if v not in choices:
                    msg = f"{v!r} is not one of SGLang's choices for {spec['flag']}"
                    msg += did_you_mean(v, choices) or f" ({', '.join(map(str, choices))})"
                    problems.append((name, msg))
    return problems

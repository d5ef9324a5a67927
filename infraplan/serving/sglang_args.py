"""Map a fleet's engine block to SGLang `python -m sglang.launch_server` argv, per SGLang release.

Arg names are SGLang's `ServerArgs` field names in snake_case (`tp_size` ->
`--tp-size`); any exact spelling of one of the parser's options is accepted too
(`tensor_parallel_size`), never an abbreviation (argparse's prefix matching). They
are checked against `server_args/<VERSION>.json`, one snapshot per supported SGLang
release, each made by `scripts/snapshot_sglang_args.py` from that release's own
`ServerArgs.add_cli_args` (see its `_source`), so validation works without SGLang installed.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

from infraplan.diagnostics import did_you_mean
from infraplan.errors import ProviderError
from infraplan.util.redact import is_sensitive_name

SNAPSHOT_DIR = Path(__file__).with_name("server_args")


class ArgKind(StrEnum):
    """The value types a snapshot gives an arg (`type`); `list[<kind>]` is several values after one option."""

    FLAG = "flag"  # no value: present when true
    INT = "int"
    FLOAT = "float"
    STR = "str"
    SIZE = "size"  # SGLang's human_readable_int: an int, or "128k", "32Ki"
    JSON = "json"  # one JSON text
    ANY = "any"  # a converter infraplan cannot check


def _kind(type_: str) -> tuple[ArgKind, bool]:
    """A snapshot `type` as (kind, is a list)."""
    if type_.startswith("list[") and type_.endswith("]"):
        return ArgKind(type_[5:-1]), True
    return ArgKind(type_), False


def _version_key(version: str) -> tuple[tuple[int, ...], int]:
    """Release numbers, then the post-release number (-1 for none): `0.5.6` < `0.5.6.post2` < `0.5.23`."""
    release, _, post = version.partition(".post")
    return tuple(int(p) for p in release.split(".")), int(post) if post else -1


#: SGLang releases infraplan has a parser snapshot for, oldest first.
SUPPORTED_VERSIONS: tuple[str, ...] = tuple(sorted((p.stem for p in SNAPSHOT_DIR.glob("*.json")), key=_version_key))
#: The release a fleet that pins none is checked against (and, on SkyPilot, installs): the newest.
DEFAULT_VERSION: str = SUPPORTED_VERSIONS[-1]

#: Args whose values must never be shown in plans, state history or logs.

#: Set by infraplan from the model and fleet blocks, never from `engine.args`.
RESERVED_ARGS: dict[str, str] = {
    "model_path": "model.source",
    "model": "model.source",
    "revision": "model.revision",
    "served_model_name": "model.served_name",
    "host": "the provider",
    "port": "fleet.port",
    "config": "the provider (it passes the secret args in a private --config file)",
}

# SGLang's human_readable_int: an int, or a number with an SI or IEC suffix ("128k", "32Ki").
_SIZE = re.compile(r"\d+(?:\.\d+)?(?:Ki|Mi|Gi|Ti|k|M|G|T)?")


def unsupported_version(version: str) -> str | None:
    """Why `version` cannot be used (naming the supported ones), or None when it is supported."""
    if version in SUPPORTED_VERSIONS:
        return None
    return (f"SGLang {version} is not supported; supported versions: {', '.join(SUPPORTED_VERSIONS)} "
            "(a new one is added with scripts/snapshot_sglang_args.py)")


@functools.cache
def load_snapshot(version: str = DEFAULT_VERSION) -> dict[str, Any]:
    """The committed snapshot of SGLang `version`'s server-arg parser; ProviderError if unsupported."""
    problem = unsupported_version(version)
    if problem:
        raise ProviderError(problem)
    return json.loads((SNAPSHOT_DIR / f"{version}.json").read_text(encoding="utf-8"))


@functools.cache
def _alias_map(version: str) -> dict[str, str]:
    """Every exact spelling (snake_case) of an arg of `version` -> its snapshot key."""
    aliases: dict[str, str] = {}
    for name, spec in load_snapshot(version)["args"].items():
        aliases[name] = name
    for name, spec in load_snapshot(version)["args"].items():
        for opt in spec["options"]:
            if opt.startswith("--") and opt != spec.get("negation"):  # `no_x: true` is not `x: true`
                aliases.setdefault(opt[2:].replace("-", "_"), name)
        aliases.setdefault(spec["dest"], name)
    return aliases


def arg_spec(name: str, version: str = DEFAULT_VERSION) -> dict[str, Any] | None:
    """The snapshot entry of `version` for `name` (or one of its exact spellings), or None."""
    key = _alias_map(version).get(name)
    return load_snapshot(version)["args"][key] if key else None


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


def _values(kind: ArgKind, value: Any) -> list[str]:
    if kind is ArgKind.JSON and not isinstance(value, str):
        return [json.dumps(value, sort_keys=True)]
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, dict):
        return [json.dumps(value, sort_keys=True)]
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return [str(value)]


def secret_args(args: dict[str, Any]) -> dict[str, Any]:
    """The args that must never be on a command line (`api_key`, `admin_api_key`, ...): they
    go in a private YAML file given as SGLang's own `--config` (see `build_launch_argv`)."""
    return {k: v for k, v in args.items() if v is not None and is_sensitive_name(k)}


def build_launch_argv(
    *,
    model_source: str,
    revision: str | None,
    served_name: str | None,
    host: str,
    port: int,
    args: dict[str, Any],
    version: str = DEFAULT_VERSION,
    secrets_file: str | None = None,
) -> list[str]:
    """The argv that starts one SGLang `version` server for these settings.

    Each arg becomes the option that release's parser has for it. Flags (`enable_metrics:
    true`) are present when true and absent when false (`--no-X` when false for a
    `--X/--no-X` pair); `None` values are left out; lists become several values after one
    option. An arg that release does not have is a ProviderError. Secret args
    (`secret_args`) are left out and `--config secrets_file` added: the caller writes
    them there (0600), since a command line is readable by every user (`ps`).
    """
    clash = sorted(n for n in args if n in RESERVED_ARGS)
    if clash:
        raise ProviderError(
            f"engine.args must not set {', '.join(clash)}: infraplan sets "
            + ", ".join(f"{n} from {RESERVED_ARGS[n]}" for n in clash)
        )
    unknown = [n for n in args if arg_spec(n, version) is None]
    if unknown:
        raise ProviderError("; ".join(_unknown(n, version) for n in unknown))
    argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", model_path_from_source(model_source)]
    if revision:
        argv += ["--revision", revision]
    if served_name:
        argv += ["--served-model-name", served_name]
    argv += ["--host", host, "--port", str(port)]
    hidden = secret_args(args)
    if hidden:
        if secrets_file is None:
            raise ValueError(f"secret args {sorted(hidden)} need a secrets_file")
        argv += ["--config", secrets_file]
    for name, value in args.items():
        if value is None or name in hidden:
            continue
        spec = arg_spec(name, version)
        assert spec is not None  # unknown names were refused above
        kind, _ = _kind(spec["type"])
        if kind is ArgKind.FLAG:
            if value:
                argv.append(spec["flag"])
            elif "negation" in spec:
                argv.append(spec["negation"])
            continue
        argv += [spec["flag"], *_values(kind, value)]
    return argv


def _scalar_ok(kind: ArgKind, value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    match kind:
        case ArgKind.FLAG:
            return isinstance(value, bool)
        case ArgKind.INT:
            return number and isinstance(value, int)
        case ArgKind.FLOAT:
            return number
        case ArgKind.STR:
            return isinstance(value, str)
        case ArgKind.SIZE:
            return (number and isinstance(value, int)) or \
                (isinstance(value, str) and _SIZE.fullmatch(value.strip()) is not None)
        case ArgKind.JSON:
            if isinstance(value, str):
                try:
                    json.loads(value)
                except ValueError:
                    return False
            return True
    return True


def _type_ok(type_: str, value: Any) -> bool:
    kind, is_list = _kind(type_)
    if is_list:
        return isinstance(value, list) and all(_scalar_ok(kind, v) for v in value)
    return _scalar_ok(kind, value)


_KIND_WORDS = {"flag": "true or false", "size": "an int or a size such as '128k'", "json": "a JSON value",
               "int": "an int"}


def _unknown(name: str, version: str) -> str:
    """`unknown SGLang <version> server arg 'x'` with the closest real names, and the releases that have it."""
    known = sorted(_alias_map(version))
    msg = f"unknown SGLang {version} server arg {name!r}"
    longer = [k for k in sorted(load_snapshot(version)["args"]) if k.startswith(name + "_")]
    if longer:
        shown = " or ".join(repr(k) for k in longer[:4])
        msg += f"; did you mean {shown}?"
    else:
        msg += did_you_mean(name, known)
    elsewhere = [v for v in SUPPORTED_VERSIONS if v != version and name in _alias_map(v)]
    if elsewhere:
        msg += f" ({'SGLang ' + ', '.join(elsewhere)} {'has' if len(elsewhere) == 1 else 'have'} it)"
    return msg


def deprecated_args(args: dict[str, Any], version: str = DEFAULT_VERSION) -> list[tuple[str, str]]:
    """Args that SGLang `version` still takes but calls deprecated, as (arg name, SGLang's note)."""
    out = []
    for name in args:
        spec = arg_spec(name, version) if name not in RESERVED_ARGS else None
        if spec and spec.get("deprecated"):
            out.append((name, f"deprecated in SGLang {version}: {spec.get('help') or spec['flag']}"))
    return out


def validate_args(args: dict[str, Any], version: str = DEFAULT_VERSION) -> list[tuple[str, str]]:
    """Problems with `engine.args` for SGLang `version`, as (arg name, message); empty when all is well."""
    problems: list[tuple[str, str]] = []
    for name, value in args.items():
        if name in RESERVED_ARGS:
            problems.append((name, f"set by infraplan from {RESERVED_ARGS[name]}; remove it from engine.args"))
            continue
        spec = arg_spec(name, version)
        if spec is None:
            problems.append((name, _unknown(name, version)))
            continue
        if value is None:
            continue
        kind = spec["type"]
        if name.startswith("json_") and isinstance(value, dict):
            continue  # a JSON-text option (json_model_override_args) written as a map
        if not _type_ok(kind, value):
            want = _KIND_WORDS.get(kind, f"a {kind}")
            problems.append((name, f"expects {want}, got {type(value).__name__} {value!r}"))
            continue
        choices = spec.get("choices")
        if choices:
            for v in value if isinstance(value, list) else [value]:
                if v not in choices:
                    msg = f"{v!r} is not one of SGLang {version}'s choices for {spec['flag']}"
                    msg += did_you_mean(v, choices) or f" ({', '.join(map(str, choices))})"
                    problems.append((name, msg))
    return problems

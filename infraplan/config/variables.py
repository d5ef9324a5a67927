"""Input variable values: defaults < INFRAPLAN_VAR_<name> < --var-file < --var.

Text from the command line or the environment is converted to the declared
type; every value is then checked against the variable's validation rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infraplan.config.expressions import INVALID, did_you_mean
from infraplan.config.yaml_positions import PathT, format_path, load_yaml
from infraplan.diagnostics import Diagnostic, Location, clip, short_repr
from infraplan.models.config import VariableBlock, VariableValidation
from infraplan.util.patterns import search

ENV_PREFIX = "INFRAPLAN_VAR_"

LocateFn = Callable[[PathT], Location | None]


@dataclass
class _Given:
    value: Any
    source: str  # for messages: "--var", "INFRAPLAN_VAR_x", "prod.yaml"
    location: Location | None
    text: bool  # came as text (CLI / env): parse lists, maps, numbers, bools


class _TypeMismatch(ValueError):
    """A value that cannot be converted to the declared type."""


def convert(value: Any, type_: str, *, text: bool = False) -> Any:
    """Convert `value` to the declared variable type; raises ValueError."""
    if type_ == "any":
        return value
    if type_ == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        raise _TypeMismatch(f"expected a string, got {_describe(value)}")
    if type_ == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            s = value.strip()
            try:
                return int(s)
            except ValueError:
                pass
            try:
                f = float(s)
            except ValueError:
                raise _TypeMismatch(f"expected a number, got {short_repr(value)}") from None
            if math.isfinite(f):
                return f
        raise _TypeMismatch(f"expected a number, got {_describe(value)}")
    if type_ == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
        raise _TypeMismatch(f"expected a bool (true/false), got {_describe(value)}")
    want = list if type_ == "list" else dict
    if isinstance(value, str) and text:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise _TypeMismatch(f"expected a {type_} as JSON/YAML text, got {short_repr(value)}") from None
    if isinstance(value, want):
        return value
    raise _TypeMismatch(f"expected a {type_}, got {_describe(value)}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {bool: "bool", int: "number", float: "number", str: "string", list: "list", dict: "map"}.get(
        type(value), type(value).__name__
    )
    if isinstance(value, (list, dict)):
        return f"a {kind}"
    return f"{kind} {short_repr(value)}"


def check_rule(value: Any, rule: VariableValidation) -> bool:
    """Whether `value` passes one validation rule (its regex runs on RE2: linear time)."""
    if rule.regex is not None:
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        if isinstance(value, bool):
            text = "true" if value else "false"
        if not search(rule.regex, text):
            return False
    if rule.allowed is not None and value not in rule.allowed:
        return False
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if rule.min is not None and not (is_num and value >= rule.min):
        return False
    if rule.max is not None and not (is_num and value <= rule.max):
        return False
    has_len = isinstance(value, (str, list, dict))
    if rule.min_length is not None and not (has_len and len(value) >= rule.min_length):
        return False
    if rule.max_length is not None and not (has_len and len(value) <= rule.max_length):
        return False
    return True


def sensitive_strings(value: Any) -> set[str]:
    """The string forms of a sensitive value (and of its leaves) to redact."""
    out: set[str] = set()
    if isinstance(value, (list, dict)):
        if value:
            out.add(json.dumps(value, default=str))
        for v in value.values() if isinstance(value, dict) else value:
            out |= sensitive_strings(v)
    elif isinstance(value, bool):
        pass  # redacting "true" everywhere would be noise
    elif value is not None and str(value) != "":
        out.add(str(value))
    return out


def _parse_var_arg(arg: str) -> tuple[str, str] | None:
    name, eq, value = arg.partition("=")
    name = name.strip()
    return (name, value) if eq and name else None


def resolve_variables(
    decls: Mapping[str, VariableBlock],
    *,
    var_args: Sequence[str] = (),
    var_files: Sequence[str | Path] = (),
    env: Mapping[str, str] | None = None,
    locate: LocateFn | None = None,
) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Resolve every declared variable; returns ``(values, diagnostics)``.

    `locate` maps a config path such as ``("variable", "x", "validation", 0)``
    to its location.  A variable that fails gets the value `INVALID`.
    """
    loc = locate or (lambda _p: None)
    diags: list[Diagnostic] = []
    given: dict[str, _Given] = {}

    for key, text in (env or {}).items():
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :] in decls:
            given[key[len(ENV_PREFIX) :]] = _Given(text, key, None, True)

    for vf in var_files:
        file = str(vf)
        try:
            data = Path(vf).read_bytes()
        except OSError as e:
            diags.append(Diagnostic(f"cannot read var file {file}: {e.strerror or e}", location=Location(file, 1, 1)))
            continue
        value, pos, file_diags = load_yaml(data, file)
        diags.extend(file_diags)
        if value is None:
            continue
        if not isinstance(value, dict):
            diags.append(Diagnostic("a var file must be a mapping of variable names to values", location=pos.nearest(())))
            continue
        for name, v in value.items():
            if name not in decls:
                diags.append(
                    Diagnostic(
                        f"value for undeclared variable {short_repr(name)}{did_you_mean(name, decls)}",
                        severity="warning",
                        location=pos.nearest((name,), key=True),
                        path=f"var.{name}",
                    )
                )
                continue
            given[name] = _Given(v, file, pos.nearest((name,)), False)

    for arg in var_args:
        parsed = _parse_var_arg(arg)
        if parsed is None:
            diags.append(Diagnostic(f"--var expects NAME=VALUE, got {short_repr(arg)}"))
            continue
        name, text = parsed
        if name not in decls:
            shown_name = clip(name)
            diags.append(Diagnostic(f"--var {shown_name}: no variable {short_repr(name)} is declared{did_you_mean(name, decls)}",
                                    path=f"var.{shown_name}"))
            continue
        given[name] = _Given(text, "--var", None, True)

    values: dict[str, Any] = {}
    for name, decl in decls.items():
        base = ("variable", name)
        g = given.get(name)
        has_default = "default" in decl.model_fields_set and not (decl.default is None and not decl.nullable)
        if g is None and not has_default:
            diags.append(
                Diagnostic(
                    f"variable {short_repr(name)} is required: set it with --var {name}=..., a --var-file or {ENV_PREFIX}{name}",
                    location=loc(base),
                    path=format_path(base),
                )
            )
            values[name] = INVALID
            continue
        if g is None:
            g = _Given(decl.default, "default", loc(base + ("default",)), False)
        where = g.location or loc(base)
        source = "" if g.source == "default" else f" (from {g.source})"
        if g.value is None:
            if decl.nullable:
                values[name] = None
                continue
            diags.append(Diagnostic(f"variable {short_repr(name)} must not be null{source}", location=where, path=format_path(base)))
            values[name] = INVALID
            continue
        try:
            value = convert(g.value, decl.type, text=g.text)
        except ValueError as e:
            why = f"expected a {decl.type} (the sensitive value is not shown)" if decl.sensitive else str(e)
            diags.append(Diagnostic(f"variable {short_repr(name)}: {why}{source}", location=where, path=format_path(base)))
            values[name] = INVALID
            continue
        ok = True
        for i, rule in enumerate(decl.validation):
            rpath = base + ("validation", i)
            if not check_rule(value, rule):
                shown = "(sensitive value)" if decl.sensitive else repr(value)
                diags.append(
                    Diagnostic(
                        rule.error_message,
                        location=loc(rpath),
                        path=format_path(rpath),
                        detail=f"variable {short_repr(name)} = {shown}{source}",
                    )
                )
                ok = False
        values[name] = value if ok else INVALID
    return values, diags

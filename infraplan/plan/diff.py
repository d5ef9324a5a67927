"""Attribute-level comparison of a resource's prior and planned attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class AttributeChange:
    """One attribute that differs; `path` is dotted (``args.context_length``)."""

    path: str
    before: Any
    after: Any
    forces_replace: bool = False


def diff_attributes(
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    ignore: frozenset[str] | set[str] = frozenset(),
    unknown: frozenset[str] | set[str] = frozenset(),
    forces: frozenset[str] | set[str] = frozenset(),
) -> list[AttributeChange]:
    """Changes between two attribute dicts, nested dicts expanded to leaf paths.

    Top-level keys in `ignore` are skipped; keys in `unknown` always count as changed
    (their value is known only after apply). `forces` names top-level keys whose
    change forces replacement.
    """
    before = before or {}
    after = after or {}
    out: list[AttributeChange] = []
    for key in sorted(set(before) | set(after)):
        if key in ignore:
            continue
        b, a = before.get(key, _MISSING), after.get(key, _MISSING)
        if key in unknown:
            out.append(AttributeChange(key, None if b is _MISSING else b, None, key in forces))
            continue
        if b == a:  # the common case, decided in C
            continue
        _walk(key, b, a, out, key in forces)
    return out


def _walk(path: str, b: Any, a: Any, out: list[AttributeChange], forces: bool) -> None:
    if isinstance(b, dict) and isinstance(a, dict):
        for k in sorted(set(b) | set(a), key=str):
            _walk(f"{path}.{k}", b.get(k, _MISSING), a.get(k, _MISSING), out, forces)
        return
    if _norm(b) != _norm(a):
        out.append(
            AttributeChange(path, None if b is _MISSING else b, None if a is _MISSING else a, forces)
        )


def _norm(v: Any) -> Any:
    # JSON round-trips turn tuples into lists and may turn 1.0 into 1
    if v is _MISSING:
        return None
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v

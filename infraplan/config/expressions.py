"""``${...}`` references inside config strings, and their (partial) evaluation.

Only dotted references are allowed - no arbitrary code::

    var.NAME[.path]   local.NAME[.path]   each.key   each.value[.path]
    model.NAME.ATTR[.path]                fleet.NAME[KEY].ATTR[.path]
    router.NAME.ATTR[.path]

where a path step is ``.name``, ``[0]`` or ``["key"]``.  ``$${`` is a literal ``${``.
A string that is exactly one ``${...}`` keeps the referenced value's type.

Values produced by `evaluate` are in *template form*: any literal ``${`` is kept
escaped as ``$${`` and the only live ``${...}`` left are deferred references
(``fleet.*`` and ``router.*``, known after apply).  `resolve_deferred` turns template-form values
into final values, substituting deferred references through a lookup.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from infraplan.diagnostics import did_you_mean, short_repr

KINDS = ("var", "local", "each", "model", "fleet", "router")

_OPEN = re.compile(r"\$\$\{|\$\{")
_IDENT = r"[A-Za-z_][A-Za-z0-9_-]*"
_REF = re.compile(rf"\s*({_IDENT})((?:\s*(?:\.{_IDENT}|\[\s*(?:\d+|\"[^\"]*\"|'[^']*')\s*\]))*)\s*\Z")
_STEP = re.compile(rf"\.({_IDENT})|\[\s*(?:(\d+)|\"([^\"]*)\"|'([^']*)')\s*\]")


class ExpressionError(ValueError):
    """A malformed ``${...}`` or a reference that cannot be resolved."""


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str):
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __copy__(self) -> _Sentinel:
        return self

    def __deepcopy__(self, memo: dict) -> _Sentinel:
        return self

    def __reduce__(self) -> str:
        return self._name


UNKNOWN = _Sentinel("UNKNOWN")
"""A value only known after apply; `resolve_deferred` lookups may return it."""

INVALID = _Sentinel("INVALID")
"""A value that failed to evaluate (already reported); dependents skip their own errors."""


@dataclass(frozen=True)
class Reference:
    """One ``${...}`` reference, e.g. ``fleet.regional["us"].endpoint``.

    `key` is the instance key of a fleet (``["us"]`` or ``[0]``); `path` the
    attribute path after the name (and key).  For ``each``, `name` is ``key``
    or ``value``.
    """

    kind: str
    name: str
    key: str | int | None = None
    path: tuple[str | int, ...] = ()

    @property
    def address(self) -> str:
        """The block this points at: ``var.x``, ``local.x``, ``model.x``, ``fleet.x`` or ``each``."""
        return "each" if self.kind == "each" else f"{self.kind}.{self.name}"

    @property
    def instance_address(self) -> str:
        """Like `address`, with the instance key: ``fleet.regional["us"]``."""
        return self.address + _fmt_steps((self.key,), brackets=True) if self.key is not None else self.address

    def __str__(self) -> str:
        head = self.instance_address if self.kind != "each" else f"each.{self.name}"
        return head + _fmt_steps(self.path)


def _fmt_steps(steps: tuple, brackets: bool = False) -> str:
    out = []
    for s in steps:
        if isinstance(s, int):
            out.append(f"[{s}]")
        elif not brackets and re.fullmatch(_IDENT, s):
            out.append(f".{s}")
        else:
            out.append(f"[{json.dumps(s)}]")
    return "".join(out)


@dataclass(frozen=True)
class Template:
    """A parsed string: literal text (unescaped) and references, in order."""

    parts: tuple[str | Reference, ...]

    @property
    def refs(self) -> list[Reference]:
        return [p for p in self.parts if isinstance(p, Reference)]

    @property
    def single(self) -> Reference | None:
        """The reference if the string is exactly one ``${...}``."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Reference):
            return self.parts[0]
        return None


def parse_reference(text: str) -> Reference:
    """Parse the inside of ``${...}``; raises `ExpressionError`."""
    m = _REF.match(text)
    if not m:
        raise ExpressionError(
            f"invalid expression ${{{text}}}: only references like var.NAME, local.NAME, "
            "each.key, model.NAME.ATTR, fleet.NAME.ATTR or router.NAME.ATTR are allowed"
        )
    root = m.group(1)
    steps: list[tuple[str | int, bool]] = []  # (step, was bracketed)
    for s in _STEP.finditer(m.group(2)):
        if s.group(1) is not None:
            steps.append((s.group(1), False))
        elif s.group(2) is not None:
            steps.append((int(s.group(2)), True))
        else:
            steps.append((s.group(3) if s.group(3) is not None else s.group(4), True))
    if root not in KINDS:
        hint = did_you_mean(root, KINDS)
        raise ExpressionError(f"unknown reference ${{{text.strip()}}}: {short_repr(root)} is not one of {', '.join(KINDS)}{hint}")
    if not steps or steps[0][1]:
        raise ExpressionError(f"${{{text.strip()}}} needs a name, e.g. {root}.NAME")
    name = str(steps[0][0])
    rest = steps[1:]
    key: str | int | None = None
    if root == "each":
        if name not in ("key", "value"):
            raise ExpressionError(f"unknown reference each.{name}: use each.key or each.value")
        if name == "key" and rest:
            raise ExpressionError("each.key has no attributes")
    elif root in ("model", "fleet", "router"):
        if rest and rest[0][1]:
            if root != "fleet":
                raise ExpressionError(f"{root}.{name} has no instances to index")
            key = rest[0][0]
            rest = rest[1:]
        if not rest:
            example = "revision" if root == "model" else "endpoint"  # fleet and router
            raise ExpressionError(f"${{{text.strip()}}} needs an attribute, e.g. {root}.{name}.{example}")
    return Reference(root, name, key, tuple(s for s, _ in rest))


@functools.lru_cache(maxsize=65536)
def parse_template(text: str) -> Template:
    """Split a string into literal parts and references; raises `ExpressionError`."""
    parts: list[str | Reference] = []
    buf: list[str] = []
    pos = 0
    for m in _OPEN.finditer(text):
        if m.start() < pos:
            continue
        buf.append(text[pos : m.start()])
        if m.group() == "$${":
            buf.append("${")
            pos = m.end()
            continue
        end = text.find("}", m.end())
        if end < 0:
            raise ExpressionError(f"unterminated ${{ in {short_repr(text)}")
        if any(buf):
            parts.append("".join(buf))
        buf = []
        parts.append(parse_reference(text[m.end() : end]))
        pos = end + 1
    buf.append(text[pos:])
    if any(buf):
        parts.append("".join(buf))
    return Template(tuple(parts))


def walk_strings(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Yield ``(path, string)`` for every string holding ``${`` inside `value`."""
    if isinstance(value, str):
        if "${" in value:
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from walk_strings(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_strings(v, path + (i,))


def references(value: Any) -> set[Reference]:
    """Every reference inside a nested value; raises `ExpressionError` on bad syntax."""
    out: set[Reference] = set()
    for _, s in walk_strings(value):
        out.update(parse_template(s).refs)
    return out


def escape(value: Any) -> Any:
    """A final value in template form: every literal ``${`` becomes ``$${``."""
    if isinstance(value, str):
        return value.replace("${", "$${") if "${" in value else value
    if isinstance(value, dict):
        return {k: escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape(v) for v in value]
    return value


def to_text(value: Any) -> str:
    """How a value is written into a larger string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if value is None:
        raise ExpressionError("the value is null and cannot be used inside a string")
    return json.dumps(value, default=str)


@dataclass
class EvalContext:
    """What references resolve against at config time.

    `variables` and the `each` key are final values (escaped when used);
    `locals`, `models` and the `each` value are in template form, as
    `evaluate` produces them.  `each` is ``(key, value)`` inside a `for_each`
    block, else None.
    """

    variables: Mapping[str, Any]
    locals: Mapping[str, Any]
    models: Mapping[str, Any]
    each: tuple[Any, Any] | None = None

    def resolve(self, ref: Reference) -> Any:
        if ref.kind == "each":
            if self.each is None:
                raise ExpressionError(f"each.{ref.name} can only be used in a block with for_each")
            if ref.name == "key":
                return escape(self.each[0])
            value = self.each[1]
        else:
            table = {"var": self.variables, "local": self.locals, "model": self.models}.get(ref.kind)
            if table is None:
                raise ExpressionError(f"${{{ref}}} is only known after apply and cannot be used here")
            if ref.name not in table:
                noun = {"var": "variable", "local": "local", "model": "model"}[ref.kind]
                raise ExpressionError(f"unknown {noun} {short_repr(ref.address)}{did_you_mean(ref.name, table)}")
            value = table[ref.name]
            if ref.kind == "var":
                return escape(_walk(value, ref))
        return _walk(value, ref)


def _walk(value: Any, ref: Reference) -> Any:
    for i, step in enumerate(ref.path):
        if value is INVALID:
            return INVALID
        if isinstance(value, dict) and isinstance(step, str) and step in value:
            value = value[step]
        elif isinstance(value, list) and isinstance(step, int) and step < len(value):
            value = value[step]
        else:
            where = ref.address if ref.kind != "each" else f"each.{ref.name}"
            where += _fmt_steps(ref.path[:i])
            if isinstance(value, str) and has_deferred(value):
                raise ExpressionError(f"{where} is only known after apply; cannot take {_fmt_steps((step,))}")
            hint = did_you_mean(step, value) if isinstance(value, dict) and isinstance(step, str) else ""
            raise ExpressionError(f"{where} has no {'index' if isinstance(step, int) else 'attribute'} {short_repr(step)}{hint}")
    return value


ErrorHandler = Callable[[tuple, ExpressionError], None]


def evaluate(
    value: Any,
    ctx: EvalContext,
    *,
    defer: tuple[str, ...] = ("fleet",),
    on_error: ErrorHandler | None = None,
) -> Any:
    """Partially evaluate `value`: resolve var/local/each/model references and
    keep references of deferred kinds as ``${...}`` text (result in template form).

    Without `on_error` the first problem raises `ExpressionError`; with it, each
    problem is reported as ``on_error(path, error)`` and the bad string becomes
    `INVALID`.
    """

    def walk(v: Any, path: tuple) -> Any:
        if isinstance(v, str):
            if "${" not in v:
                return v
            try:
                return _eval_str(v, ctx, defer)
            except ExpressionError as e:
                if on_error is None:
                    raise
                on_error(path, e)
                return INVALID
        if isinstance(v, dict):
            return {k: walk(x, path + (k,)) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, path + (i,)) for i, x in enumerate(v)]
        return v

    return walk(value, ())


def _eval_str(s: str, ctx: EvalContext, defer: tuple[str, ...]) -> Any:
    tpl = parse_template(s)
    single = tpl.single
    if single is not None:
        return s if single.kind in defer else ctx.resolve(single)
    if not any(isinstance(p, Reference) for p in tpl.parts):
        return s
    out: list[str] = []
    for part in tpl.parts:
        if isinstance(part, str):
            out.append(part.replace("${", "$${"))
        elif part.kind in defer:
            out.append(f"${{{part}}}")
        else:
            v = ctx.resolve(part)
            if v is INVALID:
                return INVALID
            try:
                out.append(to_text(v))
            except ExpressionError as e:
                raise ExpressionError(f"${{{part}}}: {e}") from None
    return "".join(out)


def has_deferred(value: Any) -> bool:
    """Whether a template-form value still holds a ``${...}`` reference."""
    for _, s in walk_strings(value):
        try:
            if parse_template(s).refs:
                return True
        except ExpressionError:
            return True
    return False


def resolve_deferred(value: Any, lookup: Callable[[Reference], Any]) -> Any:
    """Finish a template-form value: substitute references through `lookup` and
    unescape ``$${``.  `lookup` may return `UNKNOWN`; a string with an unknown
    part becomes `UNKNOWN` (containers keep their other items).
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        tpl = parse_template(value)
        single = tpl.single
        if single is not None:
            return lookup(single)
        out: list[str] = []
        for part in tpl.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            v = lookup(part)
            if v is UNKNOWN:
                return UNKNOWN
            out.append(to_text(v))
        return "".join(out)
    if isinstance(value, dict):
        return {k: resolve_deferred(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_deferred(v, lookup) for v in value]
    return value


def _unexpected(ref: Reference) -> Any:
    raise ExpressionError(f"unexpected reference ${{{ref}}}")


def unescape(value: Any) -> Any:
    """A template-form value without deferred references, as a final value."""
    return resolve_deferred(value, _unexpected)

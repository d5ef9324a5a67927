"""Load YAML into plain Python values while remembering where every key and value is.

PyYAML's composer gives nodes with marks; we build dicts/lists/scalars from them
ourselves so each path (a tuple of keys and list indexes) maps to a `Location`.
Mapping keys are always strings (the scalar's text), so ``on:`` or ``1:`` stay
names instead of turning into booleans or numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from infraplan.diagnostics import Diagnostic, Location, short_repr

try:  # the libyaml loader is several times faster
    from yaml import CSafeLoader as _YamlLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _YamlLoader  # type: ignore[assignment]

PathT = tuple[str | int, ...]

#: Bounds on YAML alias expansion ("billion laughs"): alias uses, and values built in all (expanded aliases included).
MAX_ALIAS_EXPANSIONS = 10_000
MAX_EXPANDED_NODES = 1_000_000


class _Refused(Exception):
    """Stops building: an alias bound was crossed (the diagnostic is already recorded)."""


class _Loader(_YamlLoader):  # type: ignore[misc,valid-type]
    """The safe loader with a leaner tag resolver (PyYAML's is pure Python and
    dominates load time on big configs); same YAML 1.1 implicit types."""

    _implicit = _YamlLoader.yaml_implicit_resolvers

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                for tag, regexp in self._implicit.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
            return _STR_TAG
        return _SEQ_TAG if kind is SequenceNode else _MAP_TAG

_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_SCALARS = SafeConstructor.yaml_constructors
_constructor = SafeConstructor()
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def format_path(path: PathT) -> str:
    """``("fleet", "chat", "labels", 0)`` -> ``fleet.chat.labels[0]``."""
    out: list[str] = []
    for step in path:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif _IDENT.match(step):
            out.append(f".{step}" if out else step)
        else:
            out.append(f'["{step}"]')
    return "".join(out)


_PATH_STEP = re.compile(r'\.?([^.\[\]"]+)|\[(\d+)\]|\["([^"]*)"\]')


def parse_path(text: str) -> PathT:
    """The inverse of `format_path` (best effort for odd keys)."""
    steps: list[str | int] = []
    for m in _PATH_STEP.finditer(text):
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(int(m.group(2)))
        else:
            steps.append(m.group(3))
    return tuple(steps)


@dataclass
class Positions:
    """Where each path's key and value start in one file.

    `keys` and `values` hold ``(line, col)`` pairs (1-based); use `key_at`,
    `value_at` or `nearest` to get `Location` objects.
    """

    file: str
    keys: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    values: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    #: where the file really comes from, when it is a copy (`Location.note`)
    note: str | None = None

    def _at(self, lc: tuple[int, int] | None) -> Location | None:
        return Location(self.file, lc[0], lc[1], self.note) if lc is not None else None

    def key_at(self, path: PathT) -> Location | None:
        return self._at(self.keys.get(path))

    def value_at(self, path: PathT) -> Location | None:
        return self._at(self.values.get(path))

    def nearest(self, path: PathT, *, key: bool = False) -> Location | None:
        """The location of `path`, or of its closest existing ancestor.

        ``key=True`` prefers the key's position (unknown keys); otherwise the
        value's (wrong values).  A missing path falls back to its parent's key.
        """
        first, second = (self.keys, self.values) if key else (self.values, self.keys)
        lc = first.get(path) or second.get(path)
        p = path[:-1]
        while lc is None and p:
            lc = self.keys.get(p) or self.values.get(p)
            p = p[:-1]
        return self._at(lc or self.values.get(()))


def _loc(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def _lc(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, file: str):
        self.pos = Positions(file)
        self.diags: list[Diagnostic] = []
        # The composer hands an alias back as its anchor's node object: a node met twice is an alias use.
        self._seen: set[int] = set()
        self._open: set[int] = set()  # collections being built (an alias to one of them is recursive)
        self._aliases = 0
        self._built = 0  # values built, each alias expansion counted again

    def build(self, node: Any, path: PathT) -> Any:
        if isinstance(node, ScalarNode):
            self._enter(node, path)
            self.pos.values[path] = _lc(node.start_mark)
            return self._scalar(node, path)
        return self._within(node, path, self._collection)

    def _enter(self, node: Any, path: PathT) -> None:
        """Count `node` against the alias bounds (refusing past them)."""
        nid = id(node)
        if nid in self._open:
            self._refuse("recursive YAML alias (an anchor's value refers to itself)", node, path)
        # scalars inside an expanded collection are met again with it: only collections count as alias uses
        if nid in self._seen and not isinstance(node, ScalarNode):
            self._aliases += 1
            if self._aliases > MAX_ALIAS_EXPANSIONS:
                self._refuse(f"too many YAML alias expansions (more than {MAX_ALIAS_EXPANSIONS:,})", node, path)
        self._seen.add(nid)
        self._built += 1
        if self._built > MAX_EXPANDED_NODES:
            self._refuse(f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values", node, path)

    def _within(self, node: Any, path: PathT, build: Any) -> Any:
        self._enter(node, path)
        nid = id(node)
        self._open.add(nid)
        try:
            return build(node, path)
        finally:
            self._open.discard(nid)

    def _refuse(self, summary: str, node: Any, path: PathT) -> None:
        self._error(summary + " at this anchor", node, path)
        raise _Refused

    def _collection(self, node: Any, path: PathT) -> Any:
        self.pos.values[path] = _lc(node.start_mark)
        if isinstance(node, SequenceNode):
            return [self.build(child, path + (i,)) for i, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        self._error("unsupported YAML node", node, path)  # pragma: no cover
        return None

    def _scalar(self, node: ScalarNode, path: PathT) -> Any:
        tag = node.tag
        if tag == _STR_TAG or tag == _TIMESTAMP_TAG:
            return node.value
        ctor = _SCALARS.get(tag)
        if ctor is None:
            self._error(f"unsupported YAML tag {short_repr(tag)}", node, path)
            return None
        try:
            return ctor(_constructor, node)
        except (ConstructorError, ValueError) as e:
            self._error(f"bad {tag.rsplit(':', 1)[-1]} value: {e}", node, path)
            return None

    def _mapping(self, node: MappingNode, path: PathT) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[Any] = []
        for knode, vnode in node.value:
            if knode.tag == _MERGE_TAG:
                merges.append(vnode)
                continue
            if not isinstance(knode, ScalarNode):
                self._error("mapping keys must be plain strings", knode, path)
                continue
            key = knode.value
            sub = path + (key,)
            if key in out:
                first = self.pos.key_at(sub)
                self._error(f"duplicate key {short_repr(key)} (first defined at {first})", knode, sub)
                continue
            self.pos.keys[sub] = _lc(knode.start_mark)
            out[key] = self.build(vnode, sub)
        # YAML merge keys (`<<: *base`): explicit keys win over merged ones.
        for vnode in merges:
            sources = vnode.value if isinstance(vnode, SequenceNode) else [vnode]
            for src in sources:
                if not isinstance(src, MappingNode):
                    self._error("a merge key (<<) needs a mapping or a list of mappings", src, path)
                    continue
                for k, v in self._within(src, path, self._mapping).items():
                    out.setdefault(k, v)
        return out

    def _error(self, summary: str, node: Any, path: PathT) -> None:
        self.diags.append(
            Diagnostic(summary, location=_loc(self.pos.file, node.start_mark), path=format_path(path) or None)
        )


def load_yaml(text: str | bytes, file: str) -> tuple[Any, Positions, list[Diagnostic]]:
    """Parse one YAML document; returns ``(value, positions, diagnostics)``.

    An empty document gives ``None``.  Syntax errors come back as located
    diagnostics (and a ``None`` value) instead of exceptions.
    """
    builder = _Builder(file)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = _loc(file, mark) if mark is not None else Location(file, 1, 1)
        what = e.problem or "invalid YAML"
        if e.context:
            what += f" ({e.context}"
            if e.context_mark is not None and e.problem_mark is not None and e.context_mark.line != e.problem_mark.line:
                what += f" started at {file}:{e.context_mark.line + 1}:{e.context_mark.column + 1}"
            what += ")"
        return None, builder.pos, [Diagnostic(f"YAML syntax error: {what}", location=loc)]
    except yaml.YAMLError as e:  # pragma: no cover - e.g. reader errors without marks
        return None, builder.pos, [Diagnostic(f"YAML error: {e}", location=Location(file, 1, 1))]
    if node is None:
        return None, builder.pos, []
    try:
        value = builder.build(node, ())
    except _Refused:
        return None, builder.pos, builder.diags
    except RecursionError:
        return None, builder.pos, [Diagnostic("YAML nested too deeply", location=_loc(file, node.start_mark))]
    return value, builder.pos, builder.diags

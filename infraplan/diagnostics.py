"""Located diagnostics, so `validate` can report every problem at once."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal


def printable(text: str) -> str:
    """`text` on one line: newlines and other unprintable characters (a key named "\\n", a
    right-to-left override) are written as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Location:
    """A point in a config file (1-based line and column); `note` says where a copied file
    comes from (``main.yaml:12:3 (as of history #4)``)."""

    file: str
    line: int
    col: int
    note: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" + (f" ({self.note})" if self.note else "")

    def to_json(self) -> dict:
        d = asdict(self)
        if d["note"] is None:
            del d["note"]
        return d


def location_text(loc: dict) -> str:
    """A location as `to_json` wrote it, in the one-line form (``file:line:col (note)``)."""
    return str(Location(loc["file"], loc["line"], loc["col"], loc.get("note")))


@dataclass
class Diagnostic:
    """One problem found in a config, state or plan.

    `path` is the config path such as ``fleet.chat.engine.args.tp_size``.
    """

    summary: str
    severity: Literal["error", "warning"] = "error"
    location: Location | None = None
    path: str | None = None
    detail: str | None = None
    extra: dict = field(default_factory=dict)

    def one_line(self) -> str:
        where = f"{self.location}: " if self.location else ""
        at = f" (at {clip(self.path, 2 * SHOWN_CHARS)})" if self.path else ""
        return printable(f"{where}{self.severity}: {self.summary}{at}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["location"] = self.location.to_json() if self.location else None
        return d


class Diagnostics:
    """Diagnostics in the order found, each problem once.

    The one de-duplication rule: a problem is its severity and summary at its place, the
    file location when known (the replicas of one fleet block share it, so a fleet of 50
    reports a bad setting once), else the config path.
    """

    def __init__(self, items: Iterable[Diagnostic] = ()):
        self._items: list[Diagnostic] = []
        self._keys: set[tuple] = set()
        self.extend(items)

    @staticmethod
    def key(d: Diagnostic) -> tuple:
        return (d.severity, d.summary, d.location if d.location is not None else d.path)

    def append(self, d: Diagnostic) -> bool:
        """Add `d` unless the same problem is already here; True when added."""
        k = self.key(d)
        if k in self._keys:
            return False
        self._keys.add(k)
        self._items.append(d)
        return True

    def extend(self, items: Iterable[Diagnostic]) -> None:
        for d in items:
            self.append(d)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Diagnostic:
        return self._items[i]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self._items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self._items if d.severity == "warning"]

    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self._items)

    def to_json(self) -> list[dict]:
        return [d.to_json() for d in self._items]


def has_errors(diags: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diags)


#: The longest value a message quotes; a 1 MB name in a config stays a one-line error.
SHOWN_CHARS = 80


def short_repr(value: object, limit: int = SHOWN_CHARS) -> str:
    """`value` quoted as in ``{value!r}``, cut to about `limit` characters with an ellipsis."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nested too deep; an int of more digits than Python prints
        text = f"<{type(value).__name__}>"
    return clip(text, limit, end=text[0] if isinstance(value, str) else "")


def clip(text: str, limit: int = SHOWN_CHARS, *, end: str = "") -> str:
    """`text` cut to `limit` characters with an ellipsis (then `end`, e.g. a closing quote)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit - 1 - len(end)]}…{end}"


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """``"; did you mean 'x'?"`` for the closest of `choices` to `word`, or ``""``."""
    word = str(word)
    if len(word) > 4 * SHOWN_CHARS:  # difflib is quadratic; nothing that long is a typo
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return f"; did you mean {short_repr(close[0])}?" if close else ""

"""Located diagnostics, so `validate` can report every problem at once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Location:
    """A point in a config file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


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
        at = f" (at {self.path})" if self.path else ""
        return f"{where}{self.severity}: {self.summary}{at}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["location"] = asdict(self.location) if self.location else None
        return d


def has_errors(diags: list[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diags)

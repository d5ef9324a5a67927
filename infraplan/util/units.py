"""Numbers as people read them: parameter counts (``8.03B``)."""

from __future__ import annotations

_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def human_count(n: float) -> str:
    """A large count in three significant digits with a suffix: 8.03e9 -> ``8.03B``, 405e9 -> ``405B``,
    1.5e12 -> ``1.5T``; below a thousand, the number itself."""
    for unit, suffix in _SUFFIXES:
        if abs(n) >= unit:
            return f"{n / unit:.3g}{suffix}"
    return f"{n:g}"

"""Regular expressions written by users (validation rules, golden prompts), run on RE2.

RE2 matches in time linear in the text, whatever the pattern: `^(a+)+$` cannot take
seconds on a short value as it does on Python's backtracking `re` (Terraform's `regex()`
uses RE2 too). RE2 has no backreferences (`\\1`) and no lookaround (`(?=`, `(?!`,
`(?<=`, `(?<!`); a pattern using them is refused when the config is loaded.
"""

from __future__ import annotations

import functools
from typing import Any

SYNTAX_HINT = "RE2 syntax is accepted (https://github.com/google/re2/wiki/Syntax): no backreferences or lookaround"
#: RE2's memory budget for one compiled pattern; a pattern needing more is refused, not slow
MAX_PATTERN_MEMORY = 8 << 20


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message says why and which syntax is accepted."""


def _re2() -> Any:
    # imported on first use: a provider plugin's own virtualenv imports the config models
    # without ever compiling a user's pattern, and may not have google-re2
    import re2

    return re2


def _options() -> Any:
    options = _re2().Options()
    options.log_errors = False  # RE2 would print its own error line to stderr
    options.max_mem = MAX_PATTERN_MEMORY
    return options


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Any:
    """The compiled pattern (an RE2 regexp); raises PatternError for anything RE2 refuses."""
    re2 = _re2()
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"invalid regular expression: {why}; {SYNTAX_HINT}") from None


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches somewhere in `text` (as `re.search`)."""
    return compile_pattern(pattern).search(text) is not None

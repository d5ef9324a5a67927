"""Replace sensitive values (from `sensitive` variables, API keys) wherever they appear.

A field is sensitive when its name is one of `SENSITIVE_KEYS` (any value is masked) or
when it is key-, token-, secret- or password-named (`admin_api_key`, `hf_token`,
`watermark_key_b`, `ssl_keyfile_password`: string values are masked; a
`bucket_time_to_first_token` list is not a secret). Command lines are masked too:
the value after a sensitive option (`--api-key X`, `--admin-api-key=X`), in a string
(SGLang's `launch_command`) or an argv list.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "(sensitive value)"
#: how a secret sealed in state reads (util.secrets): always masked
SEALED_PREFIX = "sensitive:hmac-sha256:"
SENSITIVE_KEYS = frozenset({"api_key", "admin_api_key", "worker_api_keys", "hf_token", "token", "password", "secret"})
#: the last word of a sensitive name (`_b`, `_2` suffixes aside)
SENSITIVE_WORDS = frozenset({"key", "token", "secret", "password", "passwd", "apikey", "credential", "credentials"})
#: words that make a name sensitive wherever they stand
ALWAYS_SENSITIVE_WORDS = frozenset({"secret", "password", "passwd"})

_OPTION = re.compile(r"""(?P<opt>--[A-Za-z0-9][\w-]*)(?P<sep>=|\s+)(?!--)(?P<val>"[^"]*"|'[^']*'|[^\s"']\S*)""")


@functools.lru_cache(maxsize=4096)  # a plan asks about the same few field names thousands of times
def is_sensitive_name(name: str) -> bool:
    """Whether a field or option name (`admin_api_key`, `--hf-token`) names a secret."""
    n = name.lower().lstrip("-").replace("-", "_")
    if n in SENSITIVE_KEYS:
        return True
    words = [w for w in n.split("_") if w]
    if any(w in ALWAYS_SENSITIVE_WORDS for w in words):
        return True
    while len(words) > 1 and (len(words[-1]) == 1 or words[-1].isdigit()):
        words.pop()  # watermark_key_b, secondary_token_2
    if words == ["key"]:
        return False  # a bare `key` names something (a cost line, a for_each key), it holds no secret
    return bool(words) and words[-1] in SENSITIVE_WORDS


def redact_command_line(text: str, marker: str = REDACTED) -> str:
    """`text` with the value of every sensitive `--option value` / `--option=value` masked."""
    def sub(m: re.Match[str]) -> str:
        if not is_sensitive_name(m.group("opt")):
            return m.group(0)
        return f"{m.group('opt')}{m.group('sep')}{marker}"

    return _OPTION.sub(sub, text)


def redact_argv(argv: list[str], marker: str = REDACTED) -> list[str]:
    """A copy of `argv` with the value of every sensitive option masked (`--api-key X`, `--api-key=X`)."""
    out = list(argv)
    for i, tok in enumerate(out):
        if not tok.startswith("--"):
            continue
        opt, eq, _ = tok.partition("=")
        if not is_sensitive_name(opt):
            continue
        if eq:
            out[i] = f"{opt}={marker}"
        elif i + 1 < len(out) and not out[i + 1].startswith("--"):
            out[i + 1] = marker
    return out


def _sensitive(key: str, value: Any) -> bool:
    if value is None or (isinstance(value, str) and value == ""):
        return False
    k = key.lower()
    return k in SENSITIVE_KEYS or (isinstance(value, str) and is_sensitive_name(k))


def redact(value: Any, secrets: set[str] | frozenset[str] = frozenset(), *, key: str | None = None,
           marker: str = REDACTED) -> Any:
    """A copy of `value` with every secret string, sensitive field and command-line secret masked."""
    if key is not None and _sensitive(key, value):
        return marker
    if isinstance(value, dict):
        return {k: (v if v is None or v.__class__ in _NUMBERS
                    else redact(v, secrets, key=str(k), marker=marker))
                for k, v in value.items()}
    if isinstance(value, list):
        items = [redact(v, secrets, marker=marker) for v in value]
        if all(isinstance(v, str) for v in items) and any(v.startswith("--") for v in items):
            items = redact_argv(items, marker)
        return items
    if isinstance(value, str):
        if SEALED_PREFIX in value:
            return marker
        if secrets and any(s and s in value for s in secrets):
            return marker
        if "--" in value:
            return redact_command_line(value, marker)
    return value


_NUMBERS = (int, float, bool)


def redact_outputs(values: dict[str, Any], sensitive: Iterable[str]) -> dict[str, Any]:
    """Outputs as every view shows them: a sensitive one (set, not null) reads `REDACTED`."""
    hide = set(sensitive)
    return {k: (REDACTED if k in hide and v is not None else v) for k, v in values.items()}

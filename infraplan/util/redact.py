"""Replace sensitive values (from `sensitive` variables, API keys) wherever they appear."""

from __future__ import annotations

from typing import Any

REDACTED = "(sensitive value)"
SENSITIVE_KEYS = frozenset({"api_key", "hf_token", "token", "password", "secret"})


def redact(value: Any, secrets: set[str] | frozenset[str] = frozenset(), *, key: str | None = None) -> Any:
    """A copy of `value` with every secret string (and any value under a sensitive key) masked."""
    if key is not None and value not in (None, "") and key.lower() in SENSITIVE_KEYS:
        return REDACTED
    if isinstance(value, dict):
        return {k: (v if v is None or v.__class__ in _SCALARS else redact(v, secrets, key=str(k)))
                if not (isinstance(k, str) and k.lower() in SENSITIVE_KEYS)
                else redact(v, secrets, key=k)
                for k, v in value.items()} if not secrets else \
            {k: redact(v, secrets, key=str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if secrets and isinstance(value, str):
        for s in secrets:
            if s and s in value:
                return REDACTED
    return value


_SCALARS = (int, float, bool, str)

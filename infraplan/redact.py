"""Replace sensitive values (from `sensitive` variables, API keys) wherever they appear."""

from __future__ import annotations

from typing import Any

REDACTED = "(sensitive value)"
SENSITIVE_KEYS = frozenset({"api_key", "hf_token", "token", "password", "secret"})


def redact(value: Any, secrets: set[str] | frozenset[str] = frozenset(), *, key: str | None = None) -> Any:
    """A copy of `value` with every secret string (and any value under a sensitive key) masked."""
    if key is not None and key.lower() in SENSITIVE_KEYS and value not in (None, ""):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, secrets, key=str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str) and secrets:
        for s in secrets:
            if s and s in value:
                return REDACTED
    return value

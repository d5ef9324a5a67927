"""Keep secrets out of files: seal them into references on the way into state, restore the
ones this run knows on the way out.

A sealed value is ``sensitive:hmac-sha256:<hex>``, an HMAC of the value keyed by the state's
lineage: equal secrets seal equally within one state (so a plan still sees whether a key
changed), the value itself is never written. A field is sealed when its name is
sensitive (`util.redact.is_sensitive_name`) or its value holds a known secret (a
`sensitive` variable's value, wherever it was used). On reading, a reference whose
value this run knows (the current config's secrets) is restored; an unknown one (a
rotated key) stays a reference, which compares unequal to any clear value and is
masked in every view.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Any

from infraplan.util.redact import SEALED_PREFIX as REF_PREFIX
from infraplan.util.redact import is_sensitive_name

#: a known secret this long is sealed also where it is embedded in a longer string
MIN_EMBEDDED = 8


_REF = re.compile(re.escape(REF_PREFIX) + "[0-9a-f]{40}")


def is_ref(value: Any) -> bool:
    """Whether `value` is, or holds, a sealed secret reference."""
    return isinstance(value, str) and REF_PREFIX in value


def seal_value(value: str, salt: str) -> str:
    """The reference that stands for `value` in a state of lineage `salt`."""
    mac = hmac.new(salt.encode(), value.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return REF_PREFIX + mac.hexdigest()[:40]


class SecretBook:
    """The secrets one run knows, and the references they seal to in one state."""

    def __init__(self, values: Iterable[str] = (), salt: str = ""):
        self.values = frozenset(v for v in values if isinstance(v, str) and v)
        self.salt = salt
        self._refs = {seal_value(v, salt): v for v in self.values}
        # short values (a sensitive number) only as a whole: "8" must not seal every string with an 8
        self._embeddable = sorted((v for v in self.values if len(v) >= MIN_EMBEDDED), key=len, reverse=True)

    def with_salt(self, salt: str) -> SecretBook:
        """The same secrets sealed for another state (lineage)."""
        return self if salt == self.salt else SecretBook(self.values, salt)

    def _seal_str(self, text: str) -> str:
        ref = seal_value(text, self.salt)
        self._refs.setdefault(ref, text)  # a sensitive-named field's value: restorable this run
        return ref

    def _seal_embedded(self, text: str) -> str:
        """`text` with each known secret in it replaced by its reference (`Bearer <ref>`)."""
        if text in self.values:
            return self._seal_str(text)
        for v in self._embeddable:
            if v in text:
                text = text.replace(v, seal_value(v, self.salt))
        return text

    def seal(self, value: Any, *, key: str | None = None) -> Any:
        """A copy of `value` with every secret replaced by its reference."""
        if isinstance(value, str):
            if not value or is_ref(value):
                return value
            if key is not None and is_sensitive_name(key) and value not in self.values:
                return self._seal_str(value)
            return self._seal_embedded(value)
        if isinstance(value, dict):
            return {k: self.seal(v, key=str(k)) for k, v in value.items()}
        if isinstance(value, list):
            out = [self.seal(v) for v in value]
            for i in range(1, len(out)):  # argv: the value after a sensitive option (`--api-key X`)
                prev, cur = out[i - 1], out[i]
                if isinstance(prev, str) and prev.startswith("--") and is_sensitive_name(prev) \
                        and isinstance(cur, str) and cur and not is_ref(cur) and not cur.startswith("--"):
                    out[i] = self._seal_str(cur)
            return out
        return value

    def seal_all(self, value: Any) -> Any:
        """A copy of `value` with every string in it sealed (a sensitive output)."""
        if isinstance(value, str):
            return value if not value or is_ref(value) else self._seal_str(value)
        if isinstance(value, dict):
            return {k: self.seal_all(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.seal_all(v) for v in value]
        return value

    def unseal(self, value: Any) -> Any:
        """A copy of `value` with every reference this book knows restored to its secret."""
        if isinstance(value, str):
            if REF_PREFIX not in value:
                return value
            return _REF.sub(lambda m: self._refs.get(m.group(0), m.group(0)), value)
        if isinstance(value, dict):
            return {k: self.unseal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.unseal(v) for v in value]
        return value


def named_secrets(value: Any, key: str | None = None) -> set[str]:
    """The string values of every sensitive-named field in `value` (`api_key: "abc"` in a config)."""
    if isinstance(value, dict):
        return {s for k, v in value.items() for s in named_secrets(v, str(k))}
    if isinstance(value, list):
        return {s for v in value for s in named_secrets(v, key)}
    if isinstance(value, str) and value and key is not None and is_sensitive_name(key) and not is_ref(value):
        return {value}
    return set()

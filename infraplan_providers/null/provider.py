"""The `null` provider: resources that live only in state (like Terraform's `terraform_data`).

Nothing real is created, so plans and applies exercise the engine alone; it is
used by tests and by the benchmarks. `latency_ms` makes every provider call
take that long (to measure scheduling), and `fail_addresses` makes chosen
creates fail (to test failure handling).
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from typing import Any

from pydantic import Field

from infraplan.errors import ProviderError
from infraplan.models.base import StrictModel
from infraplan.providers.contract import Provider, ProviderContext, ReadResult, ResourceKind


class NullSettings(StrictModel):
    """Settings of a `null` provider block."""

    latency_ms: float = Field(0.0, ge=0, description="Milliseconds every create, read, update and delete takes.")
    fail_addresses: list[str] = Field(
        default_factory=list,
        description="Address globs whose create fails with a ProviderError: `*` and `?` are wildcards, "
        "brackets are literal (`fleet.web[1]` is one replica).",
    )


class NullProvider(Provider):
    """Keeps each replica only as its attributes in state, with a generated `id` and `endpoint`."""

    name = "null"
    computed = frozenset({"id", "endpoint"})
    settings_model = NullSettings

    @property
    def concurrent_reads(self) -> bool:  # type: ignore[override]
        """Reads are in-memory unless a latency is simulated."""
        return bool(self.settings.latency_ms)

    def __init__(self, context: ProviderContext):
        super().__init__(context)
        self._settings: NullSettings | None = None

    @property
    def settings(self) -> NullSettings:
        """The parsed settings; ProviderError when they are invalid."""
        if self._settings is None:
            self._settings = self._parse_settings(NullSettings)
        return self._settings

    def _wait(self) -> None:
        if self.settings.latency_ms:
            time.sleep(self.settings.latency_ms / 1000.0)

    def create(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> dict[str, Any]:
        self._wait()
        if any(_matches(address, pattern) for pattern in self.settings.fail_addresses):
            raise ProviderError(f"{address}: create failed (listed in the null provider's fail_addresses)")
        attrs = {k: v for k, v in attributes.items() if k not in self.computed}
        attrs.update(id=uuid.uuid4().hex, endpoint=f"null://{address}")
        return attrs

    def read(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> ReadResult:
        self._wait()
        if not attributes.get("id"):  # only a create gives one: a create that never returned made nothing
            return ReadResult(exists=False, detail="never created: the record has no id")
        return ReadResult(exists=True, attributes=dict(attributes), healthy=True)

    def update(self, kind: ResourceKind, address: str, prior: dict[str, Any], desired: dict[str, Any]
               ) -> dict[str, Any]:
        self._wait()
        return super().update(kind, address, prior, desired)

    def delete(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> None:
        self._wait()


def _matches(address: str, pattern: str) -> bool:
    # addresses contain `[i]`, so brackets must not be fnmatch character classes
    return fnmatch.fnmatchcase(address, pattern.replace("[", "[[]"))

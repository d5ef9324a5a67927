"""What a rollout step works on: replica slots (old and new object), and the abort that rolls back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Slot:
    """One replica address during a rollout: the old object (deposed under `key`) and the new one."""

    address: str
    dependencies: list[str]
    key: str = ""                  # deposed key of the old object ("" when it was not deposed)
    old: dict | None = None        # attributes of the old object (None: a replica being added)
    new: dict | None = None        # attributes of the new object once created
    old_alive: bool = True

    @property
    def old_url(self) -> str | None:
        return (self.old or {}).get("endpoint")

    @property
    def new_url(self) -> str | None:
        return (self.new or {}).get("endpoint")


class Abort(Exception):
    """A gate failed: roll back (reason, evidence)."""

    def __init__(self, reason: str, evidence: dict | None = None):
        super().__init__(reason)
        self.reason, self.evidence = reason, evidence or {}

"""What a plan does to one address: the actions of changes and of state intents."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """A planned change's action (``str(Action.CREATE) == "create"``, as in the plan JSON)."""

    CREATE = "create"
    UPDATE = "update"  # in place
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "noop"
    REFRESH = "refresh"  # no real change: state is brought in line with what refresh found

    @property
    def changes(self) -> bool:
        """True for actions that change a real thing (not noop, not refresh)."""
        return self in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE)

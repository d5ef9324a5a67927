"""The one exception tree of infraplan.

The CLI turns any of these into a one-line message and a non-zero exit code;
anything else escaping is a bug and keeps its traceback.

    InfraplanError
    ├── ConfigError            bad configuration; carries every located Diagnostic
    ├── StateError             the state file cannot be read or written as asked
    │   ├── StateDamaged       a row, column or page of the state cannot be read as written
    │   ├── StateUnreachable   the state database cannot be reached, or its connection was lost
    │   ├── LockError          another run holds the state lock (names the holder)
    │   └── StalePlanError     a saved plan no longer matches state or config
    ├── PlanError              a plan cannot be made (provider plan-time errors)
    ├── ApplyError             one or more resources failed during apply
    └── ProviderError          a provider call failed
        ├── ProviderUnavailable    the provider's extra is not installed / unknown name
        ├── TransientProviderError worth a retry (timeouts, connection refused, 5xx)
        ├── ResourceNotFound       the real object is gone
        └── ProviderTimeout        a plugin call got no answer in its time limit and was cancelled;
                                   its effect is unknown (never retried for create/update/delete)

    Terminated (a KeyboardInterrupt): SIGTERM, handled as Ctrl-C while apply runs
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from infraplan.diagnostics import Diagnostic


class InfraplanError(Exception):
    """Base of every error infraplan raises on purpose."""

    exit_code = 1

    def one_line(self) -> str:
        """The message the CLI prints."""
        return str(self)


class ConfigError(InfraplanError):
    """The configuration has errors; `diagnostics` lists all of them."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        first = errors[0] if errors else (self.diagnostics[0] if self.diagnostics else None)
        msg = first.one_line() if first else "invalid configuration"
        if len(errors) > 1:
            msg += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        super().__init__(msg)


class StateError(InfraplanError):
    """The state file cannot be used as asked."""


class StateDamaged(StateError):
    """The state file is damaged (`infraplan state check` says where and what a backup restores)."""

    def __init__(self, message: str, *, path: str, problems: list[str]):
        super().__init__(message)
        self.path = path
        self.problems = list(problems)


class StateUnreachable(StateError):
    """The state database cannot be reached (refused, unknown host or database, bad login), or the
    connection to it was lost mid-run; what was committed before stays committed."""


class LockError(StateError):
    """The state is locked by another operation."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}


class StalePlanError(StateError):
    """A saved plan was made against another state serial, lineage or config."""


class PlanError(InfraplanError):
    """A plan could not be made."""

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None):
        super().__init__(message)
        self.diagnostics = list(diagnostics or [])


class AccessDenied(InfraplanError):
    """The access policy does not let this actor do this (one line naming actor, action, address, rule)."""


class ApplyError(InfraplanError):
    """Apply finished with failed resources (or was interrupted)."""

    def __init__(self, message: str, *, abandoned: bool = False):
        super().__init__(message)
        #: calls were still running when a second interrupt stopped waiting for them
        self.abandoned = abandoned


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it is handled as Ctrl-C is (no InfraplanError:
    like KeyboardInterrupt it must not be caught by handlers of ordinary errors)."""


class ProviderError(InfraplanError):
    """A provider call failed."""


class ProviderUnavailable(ProviderError):
    """The provider is unknown, or its optional extra is not installed."""


class TransientProviderError(ProviderError):
    """A failure worth retrying: timeouts, refused connections, 5xx."""


class ResourceNotFound(ProviderError):
    """The real object behind a state entry no longer exists."""


class ProviderTimeout(ProviderError):
    """A call to a provider plugin got no answer within its time limit; it was cancelled.

    What the call did is unknown (a create may have started a server), so the engine
    does not submit it again: the next plan's refresh sees what exists. Timed-out reads
    are raised as `ReadTimeout`, which is also a TransientProviderError.
    """


class ReadTimeout(ProviderTimeout, TransientProviderError):
    """A timed-out call that changes nothing (read, plan, list): safe to ask again."""

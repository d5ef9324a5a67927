"""Who may change what: roles bound to actors or groups, scoped by workspace and address.

`infraplan.policy.yaml` beside the config (else beside the state) declares them:

    groups:
      ml-platform: ["alice@*", "github:bob *"]
    roles:                      # viewer, operator and admin are built in
      releaser: {actions: [plan, apply, rollback, approve]}
    bindings:
      - {role: operator, groups: [ml-platform], addresses: ["fleet.staging-*", "model.*"]}
      - {role: admin, actors: ["INFRAPLAN_ACTOR-of-the-oncall"]}

Patterns are shell-style (`fnmatch`). Without the file, everyone may do everything (as
before); with it, an action on an address is allowed only when some binding of the actor
grants a role holding that action there. Every command asks before it takes the lock.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationError

from infraplan.diagnostics import Diagnostic

if TYPE_CHECKING:
    from infraplan.state.api import StateLocation
from infraplan.models.base import StrictModel

from infraplan.config.files import ACCESS_POLICY_FILE as POLICY_FILE  # noqa: E402 - kept out of the config
DEFAULT_WORKSPACE = "default"


class AccessAction(StrEnum):
    """What a command does, as the access policy names it."""

    PLAN = "plan"
    APPLY = "apply"
    DESTROY = "destroy"
    STATE_EDIT = "state-edit"
    FORCE_UNLOCK = "force-unlock"
    ROLLBACK = "rollback"
    CLEANUP = "cleanup"
    APPROVE = "approve"


ALL = "*"
BUILTIN_ROLES: dict[str, list[str]] = {
    "viewer": [AccessAction.PLAN],
    "operator": [AccessAction.PLAN, AccessAction.APPLY, AccessAction.ROLLBACK],
    "admin": [ALL],
}


class Role(StrictModel):
    actions: list[str] = Field(..., description="Actions the role allows (`*`: all).")


class Binding(StrictModel):
    role: str
    actors: list[str] = Field(default_factory=list, description="Actor patterns (`alice@*`, `github:*`).")
    groups: list[str] = Field(default_factory=list, description="Groups (from `groups:`) whose members it binds.")
    workspaces: list[str] = Field(default_factory=lambda: [ALL])
    addresses: list[str] = Field(default_factory=lambda: [ALL], description="Address patterns (`fleet.prod-*`).")


class ApprovalRule(StrictModel):
    """Changes that need approvals before they are applied, and how many, from others than the author."""

    name: str
    addresses: list[str] = Field(default_factory=lambda: [ALL], description="Address patterns it covers.")
    actions: list[str] = Field(default_factory=list, description="Only these change actions (create, update, "
                               "replace, delete); empty: any change.")
    workspaces: list[str] = Field(default_factory=lambda: [ALL])
    min_hourly_increase: float | None = Field(None, ge=0, description="Also (or only, with no address "
                                              "match) when the plan raises the cost by more than this $/hour.")
    count: int = Field(1, ge=1, le=20, description="Approvals needed, each from a different actor.")


class AccessPolicy(StrictModel):
    groups: dict[str, list[str]] = Field(default_factory=dict)
    roles: dict[str, Role] = Field(default_factory=dict)
    bindings: list[Binding] = Field(default_factory=list)
    approvals: list[ApprovalRule] = Field(default_factory=list)


class AccessError(Exception):
    """A policy file that cannot be used; `diagnostics` are located in it."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(diagnostics[0].one_line())
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class Refusal:
    """Why `actor` may not `action` `address`: one line for the user and the audit log."""

    actor: str
    action: str
    address: str
    rule: str
    path: Path

    def one_line(self) -> str:
        return f"access denied: {self.actor} may not {self.action} {self.address}: {self.rule} ({self.path})"


@dataclass
class LoadedPolicy:
    path: Path
    policy: AccessPolicy

    def _actions(self, role: str) -> set[str]:
        if role in self.policy.roles:
            return {str(a) for a in self.policy.roles[role].actions}
        return {str(a) for a in BUILTIN_ROLES.get(role, [])}

    def _binds(self, b: Binding, actor: str) -> bool:
        if any(fnmatch.fnmatchcase(actor, p) for p in b.actors):
            return True
        return any(fnmatch.fnmatchcase(actor, p) for g in b.groups for p in self.policy.groups.get(g, []))

    def check(self, actor: str, action: AccessAction, addresses: list[str],
              workspace: str = DEFAULT_WORKSPACE) -> Refusal | None:
        """The first address `actor` may not `action`, or None when every one is allowed."""
        mine = [b for b in self.policy.bindings if self._binds(b, actor)
                and any(fnmatch.fnmatchcase(workspace, w) for w in b.workspaces)]
        granting = [b for b in mine if ALL in self._actions(b.role) or str(action) in self._actions(b.role)]
        for address in addresses or [ALL]:
            if any(any(fnmatch.fnmatchcase(address, p) or p == ALL for p in b.addresses) for b in granting):
                continue
            if not mine:
                rule = f"no binding names this actor in workspace {workspace}"
            elif not granting:
                rule = f"its roles ({', '.join(sorted({b.role for b in mine}))}) do not allow {action}"
            else:
                scopes = sorted({p for b in granting for p in b.addresses})
                rule = f"its {action} rights cover only {', '.join(scopes)}"
            return Refusal(actor, str(action), address, rule, self.path)
        return None


def find_policy(*folders: Path | None) -> LoadedPolicy | None:
    """The access policy beside the config (else beside the state), None when there is none."""
    from infraplan.config.yaml_positions import format_path, load_yaml

    for folder in folders:
        if folder is None:
            continue
        path = Path(folder) / POLICY_FILE
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AccessError([Diagnostic(f"cannot read {path}: {exc}")]) from None
        data, positions, diags = load_yaml(text, str(path))
        if diags:
            raise AccessError(diags)
        try:
            policy = AccessPolicy.model_validate(data or {})
        except ValidationError as exc:
            raise AccessError([
                Diagnostic(f"{e['msg']}", location=positions.nearest(tuple(e["loc"])), path=format_path(tuple(e["loc"])))
                for e in exc.errors()]) from None
        problems = []
        known = {a.value for a in AccessAction} | {ALL}
        for name, role in policy.roles.items():
            for j, a in enumerate(role.actions):
                if a not in known:
                    problems.append(Diagnostic(f"unknown action {a!r} (have: {', '.join(sorted(known))})",
                                               location=positions.nearest(("roles", name, "actions", j)),
                                               path=f"roles.{name}.actions[{j}]"))
        for i, b in enumerate(policy.bindings):
            if b.role not in policy.roles and b.role not in BUILTIN_ROLES:
                problems.append(Diagnostic(
                    f"unknown role {b.role!r} (have: {', '.join(sorted({*BUILTIN_ROLES, *policy.roles}))})",
                    location=positions.nearest(("bindings", i, "role")), path=f"bindings[{i}].role"))
            for g in b.groups:
                if g not in policy.groups:
                    problems.append(Diagnostic(f"unknown group {g!r}", location=positions.nearest(("bindings", i, "groups")),
                                               path=f"bindings[{i}].groups"))
        if problems:
            raise AccessError(problems)
        return LoadedPolicy(path, policy)
    return None


def enforce(action: AccessAction, addresses: list[str], *, actor: str, folders: list[Path | None],
            state_path: StateLocation | Path | None = None, workspace: str = DEFAULT_WORKSPACE) -> None:
    """Raise AccessDenied (audited in the state, when there is one) unless the policy allows it.
    `state_path` is where the state is (a file or a PostgreSQL database)."""
    from infraplan.errors import AccessDenied, ConfigError

    try:
        policy = find_policy(*folders)
    except AccessError as exc:
        raise ConfigError(exc.diagnostics) from None
    if policy is None:
        return
    refusal = policy.check(actor, action, addresses, workspace)
    if refusal is None:
        return
    from infraplan.state import StateLocation, open_store

    if state_path is not None and StateLocation.parse(state_path).exists():

        try:
            with open_store(state_path) as store:
                store.audit("access-denied", address=refusal.address, who=actor,
                            details={"action": refusal.action, "rule": refusal.rule, "policy": str(refusal.path)})
        except Exception:  # noqa: BLE001 - the refusal stands even where the state cannot record it
            pass
    raise AccessDenied(refusal.one_line())

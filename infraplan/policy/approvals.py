"""Approvals bound to the plan: which changes need them (`approvals:` rules in the access
policy), and whether a saved plan has them.

An approval is an `approve` row in the (hash-chained) audit log: actor, the plan's digest,
time, comment. It counts for that plan only (the digest binds it), only when its actor is
not the plan's author and the access policy lets that actor `approve` the plan's addresses.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from infraplan.policy.access import ALL, AccessAction, LoadedPolicy

APPROVE_EVENT = "approve"


@dataclass
class Requirement:
    """One rule that covers the plan: the approvals it needs and those it has."""

    rule: str
    count: int
    addresses: list[str]
    approvers: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return len(self.approvers) >= self.count

    def missing_line(self, author: str) -> str:
        has = f"has {len(self.approvers)} ({', '.join(self.approvers)})" if self.approvers else "has none"
        where = ", ".join(self.addresses[:5]) + (" ..." if len(self.addresses) > 5 else "")
        return (f"approval rule {self.rule!r} needs {self.count} approval(s) from others than {author or 'the author'} "
                f"for {where}; {has}: run `infraplan approve PLANFILE` as another actor")


def _changed(plan_json: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["address"], c["action"]) for c in plan_json.get("changes", []) if c.get("action") not in ("noop", "read")]


def requirements(policy: LoadedPolicy | None, plan_json: dict[str, Any], workspace: str = "default") -> list[Requirement]:
    """The rules of `policy` that cover this plan (its JSON: `Plan.to_json`)."""
    if policy is None:
        return []
    changed = _changed(plan_json)
    delta = float(((plan_json.get("cost") or {}).get("delta_hourly")) or 0.0)
    out = []
    for rule in policy.policy.approvals:
        if not any(fnmatch.fnmatchcase(workspace, w) for w in rule.workspaces):
            continue
        hits = [a for a, action in changed
                if (not rule.actions or action in rule.actions)
                and any(p == ALL or fnmatch.fnmatchcase(a, p) for p in rule.addresses)]
        if rule.min_hourly_increase is not None:
            if delta > rule.min_hourly_increase:
                hits = hits or [f"(cost +${delta:.2f}/h)"]
            elif rule.addresses == [ALL] and not rule.actions:
                hits = []  # a pure cost rule: below its threshold it does not apply
        if hits:
            out.append(Requirement(rule.name, rule.count, hits))
    return out


def count_approvals(reqs: list[Requirement], policy: LoadedPolicy, audit_log, digest: str, author: str,
                    workspace: str = "default") -> list[Requirement]:
    """Fill each requirement's approvers from the audit log's `approve` rows for `digest`."""
    approvers: list[str] = []
    for entry in reversed(audit_log):  # oldest first
        d = entry.details or {}
        if entry.event == APPROVE_EVENT and d.get("plan_digest") == digest and entry.who and entry.who != author \
                and entry.who not in approvers:
            approvers.append(entry.who)
    for req in reqs:
        addresses = [a for a in req.addresses if not a.startswith("(")]
        req.approvers = [a for a in approvers
                         if policy.check(a, AccessAction.APPROVE, addresses, workspace) is None]
    return reqs

"""Safe releases: rolling, blue-green and canary replacement of a fleet's replicas.

The executor hands a fleet's replica replacements to `run_rollout` as one step of
the apply graph when the fleet declares a `rollout:` strategy other than the default.
The strategy creates new replicas, checks them (readiness, golden prompts, SLO gates
against the still-running baseline), moves traffic through the routers in front of
the fleet, and removes the old replicas, or rolls everything back. Every step is
written to state as it happens (intent before, result after) and to the audit log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infraplan.errors import ApplyError


class RolloutFailed(ApplyError):
    """A gate, readiness check or golden prompt failed; the rollout was rolled back."""

    def __init__(self, message: str, evidence: dict[str, Any] | None = None, result: RolloutResult | None = None):
        super().__init__(message)
        self.evidence = evidence or {}
        self.result = result  # the steps taken, set by run_rollout


@dataclass
class RolloutContext:
    """Everything a strategy needs; built by the executor for one fleet."""

    store: Any                      # an infraplan.state.Store (thread-safe)
    provider: Any                   # the fleet's Provider
    fleet: str                      # e.g. "fleet.chat"
    spec: Any                       # infraplan.models.config.RolloutBlock
    changes: list[Any]              # the fleet's replica Changes (replace, create, delete)
    emit: Callable[[dict], None]    # progress events: {"type": "rollout", "fleet", "step", ...}
    resolve: Callable[[dict, list[str]], dict]  # finish deferred ${...} values in `after`
    who: str = ""
    alert_urls: list[str] = field(default_factory=list)
    providers: Any = None           # infraplan.providers.contract.ProviderSet, to reach router providers
    traffic: Any = None             # a rollout.traffic.TrafficSwitch; None: the routers in state in front of the fleet
    stop: Any = None                # threading.Event: set to cut waits short (Ctrl-C); None: never


@dataclass
class RolloutResult:
    """What happened: the steps taken, gate results, and whether it rolled back."""

    fleet: str
    strategy: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    rolled_back: bool = False
    reason: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


#: Replica attributes that differ between replicas of one fleet or are the provider's own.
_PER_REPLICA = frozenset({"index", "port", "instance_id", "host", "endpoint", "pid", "started_at", "log_path",
                          # a cloud provider's own (SkyPilot's computed attributes, a service's name)
                          "cluster_name", "cloud_chosen", "region_chosen", "instance_type_chosen", "status",
                          "service_name", "service_version", "workers", "canary"})


def fingerprint(replica_attributes: dict[str, Any]) -> str:
    """What a rollout rolls out, as a short hash: desired replica attributes minus per-replica ones.

    The planner computes it from a fleet's desired replica attributes and asks
    `store.rolled_back(fleet, fingerprint)` whether that very rollout was rolled back.
    """
    keep = {k: v for k, v in replica_attributes.items() if k not in _PER_REPLICA}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]

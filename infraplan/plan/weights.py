"""Traffic shares a rollout can really reach with few replicas behind an even-balancing router.

A router sends each worker it holds the same share of requests, so the new version's
share is ``new / (new + old)`` for the workers held. A canary keeps every old replica
serving while it adds new ones (capacity never drops), then, past 50%, takes old ones
out; a step's weight is met by the closest reachable share (ties: the smaller one), and
a step below 100% always keeps at least one old replica serving as the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: smg policies that give each worker the same share of requests (what the shares here assume)
EVEN_POLICIES = frozenset({"round_robin", "random"})


@dataclass(frozen=True)
class StepShape:
    """One canary step: its asked weight, and the workers that really give it."""

    target: float     # percent asked for
    new: int          # new-version workers held by the router
    old: int          # old-version workers held by the router

    @property
    def share(self) -> float:
        """Percent of requests the new version really gets."""
        total = self.new + self.old
        return 100.0 * self.new / total if total else 0.0


def shapes(n_new: int, n_old: int) -> list[StepShape]:
    """Every (new, old) worker mix a canary passes through below 100%, in order."""
    if n_new < 1:
        return []
    if n_old < 1:
        return []
    out = [StepShape(0, k, n_old) for k in range(1, n_new + 1)]
    out += [StepShape(0, n_new, m) for m in range(n_old - 1, 0, -1)]
    return out


def plan_steps(steps: list[float], n_new: int, n_old: int) -> list[StepShape]:
    """The worker mix of each canary step (`steps` in percent, ending at 100)."""
    out: list[StepShape] = []
    options = shapes(n_new, n_old)
    for target in steps:
        if target >= 100 or not options:
            out.append(StepShape(target, n_new, 0))
            continue
        best = min(options, key=lambda s: (abs(s.share - target), s.share))
        if out and best.share < out[-1].share:  # never step back
            best = StepShape(0, out[-1].new, out[-1].old)
        out.append(StepShape(target, best.new, best.old))
    return out


def _pct(x: float) -> str:
    return f"{x:.0f}%" if abs(x - round(x)) < 0.05 else f"{x:.1f}%"


def _canary_shares(spec: Any, replicas: int) -> tuple[str, str | None]:
    """The steps asked ("25% -> 50% -> 100%") and, unless exact, the shares really reached ("33.3%, 50%, 100%")."""
    real = plan_steps(list(spec.steps), replicas, replicas)
    asked = " -> ".join(_pct(x) for x in spec.steps)
    exact = all(abs(r.share - r.target) < 0.05 for r in real)
    return asked, None if exact else ", ".join(_pct(r.share) for r in real)


def describe(spec: Any, replicas: int) -> str:
    """One line for the plan: what the rollout strategy of a fleet of `replicas` will do."""
    s = spec.strategy
    if s == "canary":
        asked, really = _canary_shares(spec, replicas)
        if really is None:
            return f"canary {asked} ({replicas} replicas)"
        return f"canary {asked} ({replicas} replicas: really {really})"
    if s == "rolling":
        floor = max(0, replicas - spec.max_unavailable)
        return (f"rolling {replicas} replicas, {spec.max_surge} extra at a time, at most {spec.max_unavailable} "
                f"unavailable (at least {floor} serving)")
    if s == "blue_green":
        keep = f", old set kept {spec.rollback_window}" if spec.rollback_window else ""
        return f"blue_green: {replicas} new replicas beside the {replicas} old, traffic switched at once{keep}"
    if s == "recreate":
        return f"recreate: all {replicas} old replicas stop before the new ones start (capacity drops to zero)"
    return f"default: {replicas} replicas replaced at once, each new one before its old one goes"


def describe_service_canary(spec: Any, replicas: int, service: str, routers: list[str]) -> str:
    """One line for the plan: a canary of a fleet served as one service (a separate canary service)."""
    asked, really = _canary_shares(spec, replicas)
    return (f"canary {asked} through {', '.join(routers)}: the new version runs as a separate service "
            f"{service}-canary ({replicas} replicas) beside {service}; the router holds both services' replicas "
            f"({replicas} + {replicas}{'' if really is None else ', really ' + really}); at 100% {service} is updated to it in place and the canary "
            "service is removed")

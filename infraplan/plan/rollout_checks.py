"""Plan-time checks of a fleet's `rollout:` block: what the apply could not carry out."""

from __future__ import annotations

from typing import Any

#: strategies that move traffic between versions through a router
NEEDS_ROUTER = ("canary", "blue_green")


def check_spec(fleet_addr: str, spec: Any, has_router: bool) -> list[str]:
    """Plan-time errors for a fleet's `rollout:` block (empty when it can run)."""
    errors = []
    if spec.strategy in NEEDS_ROUTER and not has_router:
        errors.append(f"{fleet_addr}: rollout strategy {spec.strategy} moves traffic through a router, and no "
                      f"router fronts {fleet_addr}; add a `router:` block listing it, or use `rolling`")
    return errors

"""What a resource instance is: the kinds of the config's expanded resources (see `infraplan.plan.expand`)."""

from __future__ import annotations

from enum import StrEnum


class ResourceKind(StrEnum):
    """A resource instance's kind (``str(ResourceKind.REPLICA) == "replica"``, as in state and the plan JSON)."""

    MODEL = "model"      # a registry entry: no provider
    FLEET = "fleet"      # the aggregate of a fleet's replicas: no provider call of its own
    REPLICA = "replica"  # one server process / cluster / service slot, owned by a provider
    ROUTER = "router"    # a router in front of fleets, owned by a provider

    @property
    def provider_backed(self) -> bool:
        """True for kinds a provider creates, reads and deletes (replicas, routers)."""
        return self in PROVIDER_KINDS


#: kinds backed by a real thing a provider owns
PROVIDER_KINDS = frozenset({ResourceKind.REPLICA, ResourceKind.ROUTER})

"""What a resource instance is: the kinds of the config's expanded resources (see `infraplan.plan.expand`)."""

from __future__ import annotations

import re
from enum import StrEnum

# `fleet.NAME[i]` and `fleet.NAME["key"][i]` are replicas; `fleet.NAME` and `fleet.NAME["key"]` fleets
# (a for_each key is written as JSON, so it may hold escaped quotes)
_ADDRESS = re.compile(r'(?P<type>model|fleet|router)\.[A-Za-z][\w-]*(?:\["(?:[^"\\]|\\.)*"\])?(?P<index>\[\d+\])?')


class ResourceKind(StrEnum):
    """A resource instance's kind (``str(ResourceKind.REPLICA) == "replica"``, as in state and the plan JSON)."""

    MODEL = "model"      # a registry entry: no provider
    FLEET = "fleet"      # the aggregate of a fleet's replicas: no provider call of its own
    REPLICA = "replica"  # one server process / cluster / service slot, owned by a provider
    ROUTER = "router"    # a router in front of fleets, owned by a provider

    @classmethod
    def of_address(cls, address: str) -> ResourceKind | None:
        """The kind an address names (``fleet.chat[0]`` -> replica), or None for no resource address."""
        m = _ADDRESS.fullmatch(address)
        if m is None or (m["index"] and m["type"] != "fleet"):
            return None
        return cls.REPLICA if m["index"] else cls(m["type"])

    @property
    def provider_backed(self) -> bool:
        """True for kinds a provider creates, reads and deletes (replicas, routers)."""
        return self in PROVIDER_KINDS


#: kinds backed by a real thing a provider owns
PROVIDER_KINDS = frozenset({ResourceKind.REPLICA, ResourceKind.ROUTER})

"""What providers that run smg routers share: reading a running router back."""

from __future__ import annotations

from typing import Any

from infraplan.errors import ProviderError
from infraplan.providers.contract import ReadResult
from infraplan.serving.smg import SmgClient, flatten


def observe(client: SmgClient, attrs: dict[str, Any]) -> ReadResult:
    """A running router as smg reports it: /health, and the workers it holds (`workers`;
    a different set than configured shows as changed `worker_sets`)."""
    if not client.health():
        return ReadResult(exists=True, attributes=attrs, healthy=False,
                          detail=f"{client.endpoint}/health does not answer 200")
    try:
        held = client.serving()
    except ProviderError as exc:
        return ReadResult(exists=True, attributes=attrs, healthy=False, detail=str(exc))
    attrs["workers"] = held
    detail = None
    try:
        configured = flatten(attrs.get("worker_sets"))
    except ProviderError:
        configured = None
    if configured is not None and set(configured) != set(held):
        detail = f"the router holds workers {held}, state has {sorted(configured)}"
        attrs["worker_sets"] = [held]
    return ReadResult(exists=True, attributes=attrs, healthy=True, detail=detail)

"""Ask providers what really runs for each resource in state (bounded concurrency)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from infraplan.errors import InfraplanError, TransientProviderError
from infraplan.models.kinds import ResourceKind
from infraplan.providers.contract import ReadResult
from infraplan.providers.registry import ProviderSet
from infraplan.util.retry import call_with_retries




@dataclass
class Observation:
    """The refresh outcome for one state record: a ReadResult, or the error asking for it."""

    key: str
    result: ReadResult | None
    error: str | None = None


def record_key(rec) -> str:
    return f"{rec.address}#{rec.deposed}" if rec.deposed else rec.address


def refresh(records, providers: ProviderSet, *, parallelism: int = 10) -> dict[str, Observation]:
    """Read every provider-backed record; results keyed by ``address`` or ``address#deposed``."""
    todo = [r for r in records if r.provider and ResourceKind(r.kind).provider_backed]
    out: dict[str, Observation] = {}

    def one(rec) -> Observation:
        key = record_key(rec)
        try:
            provider = providers.get(rec.provider)
            # a read that fails transiently is asked again (the engine's one retry policy)
            result = call_with_retries(lambda: provider.read(ResourceKind(rec.kind), rec.address, dict(rec.attributes)),
                                       retry_on=TransientProviderError, what=f"read {key}")
            return Observation(key, result)
        except InfraplanError as exc:
            return Observation(key, None, str(exc))
        except Exception as exc:  # a provider bug must not hide the other resources
            return Observation(key, None, f"{type(exc).__name__}: {exc}")

    if not todo:
        return out
    # providers that answer from memory are read in line: threads would only add hand-offs
    local = {r.provider for r in todo if not _concurrent(providers, r.provider)}
    for rec in [r for r in todo if r.provider in local]:
        obs = one(rec)
        out[obs.key] = obs
    todo = [r for r in todo if r.provider not in local]
    if not todo:
        return out
    # a fixed set of workers pulling from one iterator: `parallelism` probes in flight,
    # without a Future (and its locks) per resource
    items = iter(todo)
    take = threading.Lock()

    def worker() -> None:
        while True:
            with take:
                rec = next(items, None)
            if rec is None:
                return
            obs = one(rec)
            out[obs.key] = obs

    workers = max(1, min(parallelism, len(todo)))
    if workers == 1:
        worker()
        return out
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _concurrent(providers: ProviderSet, key: str) -> bool:
    try:
        return bool(providers.get(key).concurrent_reads)
    except InfraplanError:
        return True  # reported per resource by the read itself

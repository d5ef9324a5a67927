"""The audit log proves itself: each row carries the hash of the row before it and its own.

``hash = sha256(json([prev_hash, at, event, address, details, who]))``. A row edited by hand
no longer matches its hash; a row deleted or inserted breaks the link of the row after it;
rows written before the chain existed (no hash) may only come first. `verify` names the
first row where the chain breaks. It proves the log was not changed by hand *short of a
rewrite of every later hash*; a copy elsewhere (an export) is what proves even that.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


def entry_hash(prev_hash: str | None, at: str, event: str, address: str | None, details: str | None,
               who: str | None) -> str:
    """The hash of one audit row, chained to `prev_hash` (`details` as stored: JSON text or None)."""
    body = json.dumps([prev_hash, at, event, address, details, who], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """What `verify` found: rows checked, rows from before the chain, and the first break (None: intact)."""

    rows: int
    unchained: int
    broken_at: int | None = None
    why: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "unchained": self.unchained, "broken_at": self.broken_at,
                "why": self.why}


def verify(rows: list[tuple]) -> ChainReport:
    """Check `rows` (id, at, event, address, details, who, prev_hash, hash), in id order."""
    prev: str | None = None
    unchained = 0
    chained = False
    last_id: int | None = None
    for rid, at, event, address, details, who, prev_hash, own in rows:
        if own is None:
            if chained:
                return ChainReport(len(rows), unchained, rid, "it has no hash, after rows that have one: "
                                   "it was inserted by hand")
            unchained += 1
            prev, last_id = None, rid
            continue
        if chained and last_id is not None and rid != last_id + 1:
            return ChainReport(len(rows), unchained, rid, f"rows {last_id + 1}..{rid - 1} are missing: deleted")
        if prev_hash != prev:
            return ChainReport(len(rows), unchained, rid, "its link to the row before does not match: a row "
                               "before it was deleted or inserted")
        if entry_hash(prev_hash, at, event, address, details, who) != own:
            return ChainReport(len(rows), unchained, rid, "its content does not match its hash: it was edited")
        chained, prev, last_id = True, own, rid
    return ChainReport(len(rows), unchained)

"""Write the state.json an apply of a config would leave, to start a golden case from.

    /work/venv/bin/python tests/helpers/golden_state.py CONFIG_DIR [NAME=VALUE ...] > state.json

Replicas get made-up but plausible computed attributes (ports from 30000, pids
from 40000, a fixed start time), as the `local` provider records them. Edit the
result by hand to describe the state a case needs.
"""

from __future__ import annotations

import json
import re
import sys

from infraplan.config import load_config
from infraplan.plan.expand import expand

START = 1767225600.0  # 2026-01-01T00:00:00Z


def applied_records(config) -> list[dict]:
    desired = expand(config)
    records, endpoints = [], {}
    n = 0
    for addr, d in desired.items():
        if d.kind != "replica":
            continue
        port = d.attributes.get("port") or 30000 + n
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", addr).strip("_")
        endpoint = f"http://127.0.0.1:{port}"
        attrs = dict(d.attributes, provider_type=d.provider_type, port=port, host="127.0.0.1",
                     endpoint=endpoint, instance_id=f"{n:02d}" + "0" * 30, pid=40000 + n,
                     started_at=START, log_path=f"/srv/infraplan/logs/{safe}.log")
        endpoints.setdefault(d.fleet, []).append(endpoint)
        records.append(_record(addr, "replica", d.provider, attrs, d.depends_on))
        n += 1
    for addr, d in desired.items():
        if d.kind == "model":
            records.append(_record(addr, "model", None, d.attributes, d.depends_on))
        elif d.kind == "fleet":
            eps = endpoints.get(addr, [])
            attrs = dict(d.attributes, endpoints=eps, endpoint=eps[0] if eps else None)
            records.append(_record(addr, "fleet", d.provider, attrs, d.depends_on))
    return sorted(records, key=lambda r: r["address"])


def _record(address, kind, provider, attributes, deps) -> dict:
    return {"address": address, "kind": kind, "provider": provider, "status": "ready",
            "attributes": attributes, "dependencies": sorted(deps), "deposed": "", "pending": None}


if __name__ == "__main__":
    cfg = load_config(sys.argv[1], var_args=sys.argv[2:], env={})
    print(json.dumps(applied_records(cfg), indent=1, sort_keys=True))

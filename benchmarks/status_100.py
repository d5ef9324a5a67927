"""Benchmark: `infraplan status` over N replicas (issue #16: 100 in under 2 s, window included).

    python benchmarks/status_100.py [--replicas 100] [--window 1s]

The replicas are real simulator servers (SGLang's HTTP API, not inference) hosted in this
process, recorded in a real state file; the real CLI (`python -m infraplan status --json`) is
timed in a subprocess. Prints wall seconds and how many replicas were read.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--window", default="1s")
    a = ap.parse_args()
    from infraplan.serving.sim import SimConfig, make_server
    from infraplan.state import StateStore

    servers = [make_server(SimConfig(model_path="org/m", served_model_name="m", port=0, health_delay_s=0))
               for _ in range(a.replicas)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "infraplan.db"
        with StateStore(db) as store, store.batch():
            store.put("fleet.web", kind="fleet", attributes={"replicas": a.replicas})
            for i, s in enumerate(servers):
                store.put(f"fleet.web[{i}]", kind="replica",
                          attributes={"fleet": "fleet.web", "endpoint": f"http://127.0.0.1:{s.server_address[1]}"})
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "infraplan", "status", "--state", str(db), "--window", a.window,
                              "--json"], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
    doc = json.loads(out.stdout)
    read = sum(1 for f in doc["fleets"] for r in f["replicas"] if r["readable"])
    print(f"{platform.processor() or platform.machine()}, {platform.python_version()}: status over {a.replicas} "
          f"replicas, window {a.window}: {wall:.2f} s wall, {read}/{a.replicas} read (window {doc['window_s']} s)")
    for s in servers:
        s.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

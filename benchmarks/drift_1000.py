"""Benchmark: one `infraplan drift` run over N replicas on the local provider (issue 4: 1,000 in < 10 s).

    python benchmarks/drift_1000.py [--replicas 1000] [--hosts 10] [--parallelism 32] [--idle-after 1h]
                                    [--json results.json]

Each replica is a real sim server (SGLang's HTTP API, not inference) on its own
127.0.0.1 port, recorded in a real state file exactly as `apply` records it, and
the real CLI (`python -m infraplan drift --json`) is timed in a subprocess. The
servers are hosted by `--hosts` processes (N / hosts servers each) because 1,000
separate Python processes do not fit this machine; the local provider still finds
each replica by pid, start time and instance id (the host's command line carries
the ids) and probes each server over HTTP: /health, /model_info, /server_info
(through the provider's read), then /health, /health_generate and /v1/models
(and /metrics with --idle-after) from drift's own prober.

Prints one line per measurement; `--json` writes {"machine": {...}, "records": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CONFIG = """\
model:
  m:
    source: hf://org/bench-model
    revision: "aaaa111"
    served_name: bench
fleet:
  web:
    provider: local
    model: model.m
    replicas: {n}
    engine:
      type: sim
      args:
        context_length: 2048
      sim:
        startup_s: 0
"""


def host_main(argv: list[str]) -> None:
    """Host mode: serve one sim server per instance id on free 127.0.0.1 ports; print the ports."""
    from infraplan.serving.sim import SimConfig, make_server

    p = argparse.ArgumentParser()
    p.add_argument("--instance-ids", required=True)
    a = p.parse_args(argv)
    ports = []
    for iid in a.instance_ids.split(","):
        cfg = SimConfig(model_path="org/bench-model", served_model_name="bench", revision="aaaa111", port=0,
                        instance_id=iid, server_args={"context_length": 2048})
        server = make_server(cfg)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 1.0}, daemon=True).start()
        ports.append(cfg.port)
    print(json.dumps({"ports": ports}), flush=True)
    threading.Event().wait()


def start_hosts(n: int, hosts: int) -> tuple[list[subprocess.Popen], list[tuple[int, int, float, str]]]:
    """(processes, [(pid, port, started_at, instance_id)] per replica)."""
    import uuid

    import psutil

    ids = [uuid.uuid4().hex for _ in range(n)]
    per = -(-n // hosts)
    procs, replicas = [], []
    for h in range(0, n, per):
        chunk = ids[h:h + per]
        procs.append(subprocess.Popen([sys.executable, __file__, "_host", "--instance-ids", ",".join(chunk)],
                                      stdout=subprocess.PIPE, text=True, start_new_session=True))
    for proc, h in zip(procs, range(0, n, per)):
        line = proc.stdout.readline()
        ports = json.loads(line)["ports"]
        started = psutil.Process(proc.pid).create_time()
        replicas += [(proc.pid, port, started, iid) for port, iid in zip(ports, ids[h:h + per])]
    return procs, replicas


def write_state(project: Path, replicas) -> None:
    """Record the replicas as an apply of the config would (same attributes)."""
    from infraplan.plan.expand import expand
    from infraplan.state import open_store
    from infraplan.workspace import Workspace

    ws = Workspace(project)
    desired = expand(ws.config)
    with open_store(ws.state) as store, store.batch():
        for addr, d in desired.items():
            if d.kind != "replica":
                continue
            pid, port, started, iid = replicas[d.attributes["index"]]
            attrs = dict(d.attributes, provider_type="local", instance_id=iid, port=port, host="127.0.0.1",
                         endpoint=f"http://127.0.0.1:{port}", pid=pid, started_at=started,
                         log_path=str(project / f"replica-{d.attributes['index']}.log"))
            store.put(addr, kind="replica", attributes=attrs, provider="local", dependencies=sorted(d.depends_on))
        endpoints = [f"http://127.0.0.1:{r[1]}" for r in replicas]
        for addr, d in desired.items():
            if d.kind == "model":
                store.put(addr, kind="model", attributes=d.attributes)
            elif d.kind == "fleet":
                store.put(addr, kind="fleet", attributes=dict(d.attributes, endpoints=endpoints, endpoint=endpoints[0]),
                          provider="local", dependencies=sorted(d.depends_on))


def time_drift(project: Path, extra: list[str]) -> dict:
    import psutil

    t0 = time.perf_counter()
    proc = psutil.Popen([sys.executable, "-m", "infraplan", "drift", str(project), "--json", *extra],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 2):
        raise SystemExit(f"drift exited {proc.returncode}: {err[-2000:]}")
    report = json.loads(out)
    return {"wall_s": round(wall, 3), "drift_duration_s": report["duration_s"], "exit_code": proc.returncode,
            "findings": report["counts"], "checked": report["checked"]["replicas"]}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_host":
        host_main(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=1000)
    p.add_argument("--hosts", type=int, default=10, help="Processes hosting the sim servers.")
    p.add_argument("--parallelism", type=int, default=16)
    p.add_argument("--idle-after", default=None, help="Also read /metrics for idle detection (e.g. 1h).")
    p.add_argument("--runs", type=int, default=2, help="Timed drift runs (the first also upgrades nothing: state is fresh).")
    p.add_argument("--json", dest="json_out", type=Path)
    a = p.parse_args()

    records = []
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        project = Path(tmp)
        (project / "main.yaml").write_text(CONFIG.format(n=a.replicas))
        t0 = time.perf_counter()
        procs, replicas = start_hosts(a.replicas, max(1, min(a.hosts, a.replicas)))
        try:
            write_state(project, replicas)
            print(f"{a.replicas} sim servers in {len(procs)} host processes ready in {time.perf_counter() - t0:.1f}s")
            extra = ["--parallelism", str(a.parallelism), "--no-orphans"]
            if a.idle_after:
                extra += ["--idle-after", a.idle_after]
            for run in range(a.runs):
                r = time_drift(project, extra)
                r.update(n=a.replicas, step="drift", run=run, parallelism=a.parallelism, idle=bool(a.idle_after))
                records.append(r)
                print(f"drift over {r['checked']} replicas: {r['wall_s']:.2f}s wall (CLI start to exit), "
                      f"{r['drift_duration_s']:.2f}s in the run, exit {r['exit_code']}, findings {r['findings']}")
            r = time_drift(project, ["--parallelism", str(a.parallelism)])
            r.update(n=a.replicas, step="drift+orphans", run=0, parallelism=a.parallelism, idle=False)
            records.append(r)
            print(f"drift with orphan listing: {r['wall_s']:.2f}s wall, {r['drift_duration_s']:.2f}s in the run")
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    if a.json_out:
        machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                   "python": platform.python_version()}
        a.json_out.write_text(json.dumps({"machine": machine, "records": records}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

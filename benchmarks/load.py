"""The load generator and the simulator under load, before and now, side by side (issue 16).

    python benchmarks/load.py                          # every scenario, 3 s each (about 45 s)
    python benchmarks/load.py --seconds 1 --json load.json
    python benchmarks/load.py --baseline <git ref>     # what "before" is

"before" is `infraplan/` at `--baseline` (default: the commit before the simulator and the bench
client moved to asyncio: the thread-per-connection stdlib simulator, the httpx bench client),
taken with `git archive` into a temporary directory; "now" is this checkout. Every server and
every client is a process of its own, run with its tree first on PYTHONPATH. Scenarios, each
streaming 20-token chat completions (16-token prompts):

* client: each bench client against the simulator now (TTFT 20 ms, TPOT 5 ms) at c = 64, a
  closed loop. Its CPU per request is its process CPU over the measured run (user + system,
  `time.process_time`) divided by the requests it sent.
* sim: each simulator (TTFT 20 ms, TPOT 20 ms) carrying 256 streams, from four bench clients
  now at c = 64 each (their figures pooled). The server's CPU is its process CPU (psutil) over
  the measured run's wall time.
* sim-tpot5: the same at TPOT 5 ms: 256 streams then ask for 51,200 tokens/s.
* sim-1client: as `sim`, from one client at c = 256: its bursts (a closed loop's 256 requests
  finish together and are sent again together) are then in the figures.

Each run first sends one warm-up round of c requests, not counted (the client now does it in
the run, on the connections it goes on with; before, it has no warm-up, so a round of its own
goes first), then measures for `--seconds`. The client CPU per request counts the warm-up round
in both its CPU and its requests, and the simulator's CPU share spans it. The figures are
SGLang bench_serving's (see infraplan.bench).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: the last commit with the stdlib simulator and the httpx bench client
BASELINE = "0d84bfb263ac8ce9216f11cb87f8fc19ce9c280b"
PROMPT_TOKENS, OUTPUT_TOKENS = 16, 20
TARGETS = {
    "client_cpu_ms_per_request": 2.0,  # at most, c = 64
    "client_ttft_ratio": 1.5,  # measured median TTFT / configured, at most, c = 64
    "sim_requests_per_s": 300.0,  # at least, c = 256
    "sim_ttft_ratio": 2.0,  # at most, c = 256
}


@dataclass(frozen=True)
class Scenario:
    name: str
    role: str  # which side is before / now: "client" or "sim"
    concurrency: int  # per client
    ttft_ms: float
    tpot_ms: float
    clients: int = 1

    @property
    def streams(self) -> int:
        return self.concurrency * self.clients


SCENARIOS = (
    Scenario("client", "client", 64, 20, 5),
    Scenario("sim", "sim", 64, 20, 20, clients=4),
    Scenario("sim-tpot5", "sim", 64, 20, 5, clients=4),
    Scenario("sim-1client", "sim", 256, 20, 20),
)


# -- the client side, run in a process of its own with one tree on PYTHONPATH ---------------------
def drive(argv: list[str]) -> None:
    """Client mode: warm up, say so on stdout, measure, print the figures as one JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    a = p.parse_args(argv)
    import inspect

    from infraplan.bench import run_bench  # the tree on PYTHONPATH: before or now

    kw = {"concurrency": a.concurrency, "prompt_tokens": PROMPT_TOKENS, "output_tokens": OUTPUT_TOKENS}
    warm_in_run = "warmup" in inspect.signature(run_bench).parameters
    if not warm_in_run:  # before: a round of its own (new connections for the measured run, as that client does)
        run_bench(a.url, num_requests=a.concurrency, **kw)
    print("measuring", flush=True)
    cpu0 = time.process_time()
    # now: the warm-up round in the run, on the connections the run goes on with
    r = run_bench(a.url, duration_s=a.seconds, **kw, **({"warmup": a.concurrency} if warm_in_run else {}))
    cpu = time.process_time() - cpu0
    warmed = a.concurrency if warm_in_run else 0  # requests whose CPU is in `cpu`
    d = r.to_dict()
    ok = [x for x in r.records if x.success]
    print(json.dumps({
        "sent": d["requests"]["sent"], "completed": d["requests"]["completed"], "failed": d["requests"]["failed"],
        "requests_per_s": d["throughput"]["requests_per_s"],
        "ttft_s": [x.ttft_s for x in ok], "tpot_s": [x.tpot_s for x in ok if x.tpot_s is not None],
        "cpu_s": cpu, "cpu_requests": d["requests"]["sent"] + warmed,
        "client_reported": d.get("client"),  # the bench's own report (now only)
    }), flush=True)


# -- the parent -------------------------------------------------------------------------------------
def extract(ref: str, into: Path) -> Path:
    """`infraplan/` at `ref` under `into` (what PYTHONPATH gets for "before")."""
    data = subprocess.run(["git", "-C", str(REPO), "archive", ref, "infraplan"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def env_for(tree: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1", NO_COLOR="1")


def start_sim(tree: Path, s: Scenario, cpu: int | None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "infraplan.serving.sim", "--host", "127.0.0.1", "--port", "0",
                             "--model-path", "org/bench", "--served-model-name", "bench", "--ttft-ms", str(s.ttft_ms),
                             "--tpot-ms", str(s.tpot_ms), "--health-delay-s", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env_for(tree), cwd=tree)
    line = proc.stdout.readline()
    if "listening on " not in line:
        proc.kill()
        raise RuntimeError(f"the simulator in {tree} did not start: {line!r}")
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    return proc, line.split("listening on ", 1)[1].split()[0]


def percentile(values: list[float], p: float) -> float | None:
    """numpy's default (linear) percentile, as infraplan.bench computes it; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    rank = (len(xs) - 1) * p / 100.0
    lo = int(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def one_run(s: Scenario, sim_tree: Path, client_tree: Path, seconds: float, pin: bool) -> dict[str, Any]:
    """One scenario: one simulator, `s.clients` client processes; their figures pooled, the
    simulator's CPU added."""
    import psutil

    sim, url = start_sim(sim_tree, s, 0 if pin else None)
    clients: list[subprocess.Popen] = []
    try:
        for _ in range(s.clients):
            clients.append(subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--drive", "--url", url,
                 "--concurrency", str(s.concurrency), "--seconds", str(seconds)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(client_tree), cwd=client_tree))
            if pin:
                os.sched_setaffinity(clients[-1].pid, {1})
        server = psutil.Process(sim.pid)
        for c in clients:
            line = c.stdout.readline()
            if line.strip() != "measuring":
                raise RuntimeError(f"a client failed: {line}{c.stderr.read()}")
        cpu0, t0 = sum(server.cpu_times()[:2]), time.perf_counter()
        results = [c.stdout.readline() for c in clients]
        cpu1, t1 = sum(server.cpu_times()[:2]), time.perf_counter()
        for c, result in zip(clients, results):
            if c.wait(60) != 0 or not result:
                raise RuntimeError(f"a client failed: {c.stderr.read()}")
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
        sim.terminate()
        sim.wait(10)
    runs = [json.loads(r) for r in results]
    ttft = [t for r in runs for t in r["ttft_s"]]
    tpot = [t for r in runs for t in r["tpot_s"]]
    ms = lambda v: None if v is None else v * 1000  # noqa: E731
    median_ttft = ms(percentile(ttft, 50))
    reported = [r["client_reported"] for r in runs if r["client_reported"]]
    return {
        "streams": s.streams, "clients": s.clients,
        "sent": sum(r["sent"] for r in runs), "completed": sum(r["completed"] for r in runs),
        "failed": sum(r["failed"] for r in runs), "requests_per_s": sum(r["requests_per_s"] for r in runs),
        "ttft_ms": median_ttft, "ttft_p90_ms": ms(percentile(ttft, 90)), "tpot_ms": ms(percentile(tpot, 50)),
        "ttft_ratio": median_ttft / s.ttft_ms if median_ttft is not None else None,
        "client_cpu_ms_per_request": sum(r["cpu_s"] for r in runs) * 1000 / max(1, sum(r["cpu_requests"] for r in runs)),
        "client_core_share": max((c["core_share"] for c in reported), default=None),  # the busiest client's own report
        "sim_core_share": (cpu1 - cpu0) / (t1 - t0),
    }


def run_all(scenarios: list[Scenario], trees: dict[str, Path], seconds: float, pin: bool,
            quiet: bool) -> list[dict[str, Any]]:
    records = []
    for s in scenarios:
        for side in ("before", "now"):
            # the side under test comes from `side`; the other is always now
            sim_tree = trees[side] if s.role == "sim" else trees["now"]
            client_tree = trees[side] if s.role == "client" else trees["now"]
            if not quiet:
                print(f"{s.name}: {s.role} {side}, {s.clients} x c={s.concurrency}, TTFT {s.ttft_ms:g} ms, "
                      f"TPOT {s.tpot_ms:g} ms", file=sys.stderr, flush=True)
            records.append({"scenario": s.name, "side": side, "role": s.role, "concurrency": s.concurrency,
                            "ttft_ms_configured": s.ttft_ms, "tpot_ms_configured": s.tpot_ms,
                            **one_run(s, sim_tree, client_tree, seconds, pin)})
    return records


def verdicts(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The issue's targets, checked against the "now" records."""
    now = {r["scenario"]: r for r in records if r["side"] == "now"}
    out: dict[str, dict[str, Any]] = {}
    if "client" in now:
        c = now["client"]
        out["client_cpu_ms_per_request"] = {"value": c["client_cpu_ms_per_request"],
                                            "ok": c["client_cpu_ms_per_request"] <= TARGETS["client_cpu_ms_per_request"]}
        out["client_ttft_ratio"] = {"value": c["ttft_ratio"], "ok": c["ttft_ratio"] <= TARGETS["client_ttft_ratio"]}
    if "sim" in now:
        s = now["sim"]
        out["sim_requests_per_s"] = {"value": s["requests_per_s"], "ok": s["requests_per_s"] >= TARGETS["sim_requests_per_s"]}
        out["sim_ttft_ratio"] = {"value": s["ttft_ratio"], "ok": s["ttft_ratio"] <= TARGETS["sim_ttft_ratio"]}
    return out


def _f(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(records: list[dict[str, Any]]) -> str:
    """before / now / ratio per scenario and figure."""
    figures = (("requests_per_s", "req/s", 0), ("ttft_ms", "median TTFT ms", 1), ("ttft_p90_ms", "p90 TTFT ms", 1),
               ("tpot_ms", "median TPOT ms", 2), ("client_cpu_ms_per_request", "client CPU ms/req", 2),
               ("client_core_share", "busiest client (cores)", 2), ("sim_core_share", "sim CPU (cores)", 2),
               ("failed", "failed", 0))
    lines = ["| scenario | figure | before | now | now / before |", "|---|---|---:|---:|---:|"]
    for name in dict.fromkeys(r["scenario"] for r in records):
        pair = {r["side"]: r for r in records if r["scenario"] == name}
        b, n = pair.get("before", {}), pair.get("now", {})
        for key, label, digits in figures:
            bv, nv = b.get(key), n.get(key)
            ratio = nv / bv if isinstance(bv, (int, float)) and isinstance(nv, (int, float)) and bv else None
            lines.append(f"| {name} | {label} | {_f(bv, digits)} | {_f(nv, digits)} | {_f(ratio, 2)} |")
    return "\n".join(lines)


def describe_machine() -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import run  # noqa: E402  (the sibling script: the same machine record)

    m = run.machine()
    m.pop("dont_write_bytecode", None)
    return m


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--drive"]:
        drive(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--baseline", default=BASELINE, help="git ref of the code 'before' [%(default).12s]")
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run [%(default)s]")
    p.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                   help="comma-separated, of " + ", ".join(s.name for s in SCENARIOS))
    p.add_argument("--pin", action="store_true", help="pin the simulator to CPU 0 and the client to CPU 1")
    p.add_argument("--json", dest="json_path", default=None, help="write the records here")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    by_name = {s.name: s for s in SCENARIOS}
    unknown = [n for n in a.scenarios.split(",") if n not in by_name]
    if unknown:
        p.error(f"unknown scenarios: {', '.join(unknown)}")
    scenarios = [by_name[n] for n in a.scenarios.split(",")]
    started = describe_machine()
    with tempfile.TemporaryDirectory(prefix="infraplan-load-") as tmp:
        try:
            before = extract(a.baseline, Path(tmp))
        except subprocess.CalledProcessError as e:
            p.error(f"--baseline {a.baseline}: {e.stderr.decode(errors='replace').strip()}")
        records = run_all(scenarios, {"before": before, "now": REPO}, a.seconds, a.pin, a.quiet)
    doc = {"machine": {**started, "load_1m_after": round(os.getloadavg()[0], 2)}, "baseline": a.baseline,
           "seconds": a.seconds, "pinned": a.pin, "records": records, "targets": TARGETS, "verdicts": verdicts(records)}
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    m = doc["machine"]
    print(f"Machine: {m.get('cpu')}, {m.get('cores')} cores, Python {m.get('python')}, "
          f"load {m.get('load_1m')} before, {m['load_1m_after']} after; {a.seconds:g} s per run"
          f"{', pinned' if a.pin else ''}")
    print(table(records))
    for key, v in doc["verdicts"].items():
        print(f"{key}: {_f(v['value'], 2)} (target {TARGETS[key]:g}) {'ok' if v['ok'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time the infraplan CLI on generated configurations (issue 6).

    python benchmarks/run.py --sizes 100,1000 --json results.json
    python benchmarks/run.py --sizes 1000 --steps plan,apply,noop_plan --json out.json
    python benchmarks/run.py --sizes 100 --steps makespan --latency-ms 50 --parallelism 10,50
    python benchmarks/run.py --sizes 1000 --steps plan,apply,noop_plan --state postgresql://me@127.0.0.1/bench

Every step is one `infraplan` process. Its wall time is measured with
`time.perf_counter` around it, and its CPU time (user + system) and peak RSS come
from the rusage of that one child (`os.wait4`; the same figures as
`getrusage(RUSAGE_CHILDREN)` deltas, but peak RSS of this child rather than the
largest child so far). The output is one record per (size, step), written as JSON
and printed as a table with the machine described. With `--state URL` the size steps run
twice, on an SQLite file and then on that PostgreSQL database (each size in a schema of its
own, dropped after), and the records say which (`backend`), with the ratio of PostgreSQL's
wall time to SQLite's.

infraplan is measured as installed: its packages are byte-compiled first, as pip does
at install time (`--no-compile` removes their cached bytecode instead, and the steps
run with PYTHONDONTWRITEBYTECODE=1, so each one compiles them from source).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate  # noqa: E402  (the sibling script)

STARTUP_STEPS = ("version", "empty_plan")
SIZE_STEPS = ("plan", "apply", "noop_plan", "bump_plan", "bump_apply", "drift", "destroy")
ALL_STEPS = STARTUP_STEPS + SIZE_STEPS + ("makespan",)
BUMPED_VERSION = 1


class StepFailed(RuntimeError):
    """An infraplan command exited non-zero."""

    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step = step


@dataclass
class Measure:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    output: str


def infraplan_command(explicit: str | None = None) -> list[str]:
    """How to run infraplan: --infraplan, else the script next to this interpreter, else `python -m`."""
    if explicit:
        return explicit.split()
    script = Path(sys.executable).parent / "infraplan"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("infraplan")
    return [found] if found else [sys.executable, "-m", "infraplan"]


PACKAGES = ("infraplan", "infraplan_providers")
# prints the directories of PACKAGES as the interpreter that runs infraplan finds them
_FIND_PACKAGES = (
    "import importlib.util, json\n"
    "print(json.dumps({n: list(importlib.util.find_spec(n).submodule_search_locations) for n in %r}))" % (PACKAGES,)
)


def python_of(cmd: list[str]) -> str:
    """The interpreter that runs `cmd`: itself if it is a python, else a script's `#!` python,
    else this one."""
    first = Path(cmd[0])
    if first.name.startswith("python"):
        return cmd[0]
    try:
        with open(shutil.which(cmd[0]) or cmd[0], "rb") as f:
            line = f.readline().decode(errors="replace")
    except OSError:
        return sys.executable
    if line.startswith("#!"):
        words = line[2:].split()
        if words and Path(words[0]).name == "env":
            words = words[1:]
        if words and Path(words[0]).name.startswith("python"):
            return shutil.which(words[0]) or words[0]
    return sys.executable


def prepare_bytecode(cmd: list[str], *, compile_: bool) -> str:
    """Byte-compile infraplan's packages with the interpreter that runs it (stdlib
    `compileall`, as pip does at install), or with `compile_=False` remove their cached
    bytecode. Returns what was done, for the machine record."""
    python = python_of(cmd)
    found = subprocess.run([python, "-c", _FIND_PACKAGES], capture_output=True, text=True, check=True)
    dirs = [d for ds in json.loads(found.stdout).values() for d in ds]
    if compile_:
        # -q: errors only; -j 0: all cores; as py_compile, this writes even with PYTHONDONTWRITEBYTECODE set
        done = subprocess.run([python, "-m", "compileall", "-q", "-j", "0", *dirs])
        if done.returncode:  # e.g. a file that does not parse: its module compiles on every run
            return f"compiled before timing, with errors (compileall exited {done.returncode})"
        return "compiled before timing"
    for d in dirs:
        for cache in Path(d).rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
    return "removed before timing; each step compiles infraplan's sources (--no-compile)"


def measure(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measure:
    """Run `argv` in `cwd` and measure it; stdout and stderr go to a file (no pipe to drain)."""
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120", **(env or {}))
    with tempfile.TemporaryFile(mode="w+b") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    # ru_maxrss is in KiB on Linux, in bytes on macOS
    rss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return Measure(wall, usage.ru_utime + usage.ru_stime, rss, proc.returncode, text)


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM and Python version of this machine, its load when the run
    started (other work skews small figures), and whether Python may cache bytecode
    (with PYTHONDONTWRITEBYTECODE set, infraplan's own modules are compiled on every run)."""
    cpu = platform.processor() or platform.machine()
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    try:
        import psutil

        ram_gb = psutil.virtual_memory().total / 1024**3
    except ImportError:  # pragma: no cover - psutil is an infraplan dependency
        ram_gb = float("nan")
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(ram_gb, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_1m": round(os.getloadavg()[0], 2),
            "dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))}


def has_command(cmd: list[str], name: str, env: dict[str, str] | None = None) -> bool:
    m = measure([*cmd, "--help"], Path.cwd(), env)
    return re.search(rf"^\s+{re.escape(name)}\s", m.output, re.M) is not None


class Runner:
    """Runs the steps and collects records."""

    def __init__(self, cmd: list[str], *, keep: bool = False, verbose: bool = True,
                 env: dict[str, str] | None = None):
        self.cmd = cmd
        self.env = env
        self.keep = keep
        self.verbose = verbose
        self.records: list[dict[str, Any]] = []

    def _log(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=sys.stderr, flush=True)

    def _workdir(self, label: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"infraplan-bench-{label}-"))

    def _cleanup(self, d: Path) -> None:
        if self.keep:
            self._log(f"  kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)

    def record(self, n: int, step: str, m: Measure | None, **extra: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {"n": n, "step": step, "wall_s": None, "cpu_s": None, "peak_rss_mb": None}
        if m is not None:
            rec.update(wall_s=round(m.wall_s, 4), cpu_s=round(m.cpu_s, 4), peak_rss_mb=round(m.peak_rss_mb, 1))
        rec.update(extra)
        self.records.append(rec)
        shown = f"{rec['wall_s']:.3f}s wall" if rec["wall_s"] is not None else rec.get("note", "")
        self._log(f"  n={n:<6} {step:<14} {shown}")
        return rec

    def run(self, argv: list[str], cwd: Path, what: str, ok: tuple[int, ...] = (0,)) -> Measure:
        m = measure([*self.cmd, *argv], cwd, self.env)
        if m.returncode not in ok:
            tail = "\n".join(m.output.splitlines()[-15:])
            raise StepFailed(what, f"{what}: `infraplan {' '.join(argv)}` exited with {m.returncode}:\n{tail}")
        return m

    # -- steps -------------------------------------------------------------------
    def startup(self, steps: set[str]) -> None:
        if "version" in steps:
            self.record(0, "version", self.run(["--version"], Path.cwd(), "version"))
        if "empty_plan" in steps:
            d = self._workdir("empty")
            try:
                (d / "main.yaml").write_text("# an empty configuration\n")
                self.record(0, "empty_plan", self.run(["plan"], d, "empty_plan"))
            finally:
                self._cleanup(d)

    def size(self, n: int, steps: set[str], *, has_drift: bool, state: str | None = None) -> None:
        """The per-size steps on a fresh directory; unselected prerequisites run unrecorded. With
        `state` (a PostgreSQL URL), against a fresh schema of that database instead of a file."""
        d = self._workdir(f"n{n}")
        saved_env = self.env
        try:
            with contextlib.ExitStack() as stack:
                extra: dict[str, Any] = {}
                if state is not None:
                    url = stack.enter_context(fresh_schema(state, f"infraplan_bench_n{n}"))
                    self.env = {**(saved_env or {}), "INFRAPLAN_STATE": url}
                    extra["backend"] = "postgres"
                else:
                    extra["backend"] = "sqlite"
                self._size_steps(n, steps, d, extra, has_drift=has_drift)
        finally:
            self.env = saved_env
            self._cleanup(d)

    def _size_steps(self, n: int, steps: set[str], d: Path, extra: dict[str, Any], *, has_drift: bool) -> None:
        counts = generate.generate(n, d)
        self._log(f"n={n}: {counts['resources']} resources in {d} ({extra['backend']} state)")
        needs_apply = bool(steps & {"noop_plan", "bump_plan", "bump_apply", "drift", "destroy"})
        extra = {"resources": counts["resources"], **extra}
        if "plan" in steps:
            self.record(n, "plan", self.run(["plan"], d, "plan"), **extra)
        if "apply" in steps or needs_apply:
            m = self.run(["apply", "--auto-approve"], d, "apply")
            if "apply" in steps:
                self.record(n, "apply", m, **extra)
        if "noop_plan" in steps:
            m = self.run(["plan", "--detailed-exitcode"], d, "noop_plan")
            self.record(n, "noop_plan", m, **extra)
        if steps & {"bump_plan", "bump_apply"}:
            generate.bump(d, BUMPED_VERSION)
            if "bump_plan" in steps:
                self.record(n, "bump_plan", self.run(["plan"], d, "bump_plan"), **extra)
            if "bump_apply" in steps:
                self.record(n, "bump_apply", self.run(["apply", "--auto-approve"], d, "bump_apply"), **extra)
        if "drift" in steps:
            if has_drift:
                m = self.run(["drift"], d, "drift", ok=(0, 2))  # 2: drift found, a result
                self.record(n, "drift", m, drifted=m.returncode == 2, **extra)
            else:
                self.record(n, "drift", None, skipped=True, note="skipped: `infraplan drift` does not exist yet")
        if "destroy" in steps:
            self.record(n, "destroy", self.run(["destroy", "--auto-approve"], d, "destroy"), **extra)

    def makespan(self, n: int, latency_ms: float, parallelism: list[int]) -> None:
        """Apply from empty state with `latency_ms` per provider call at each parallelism."""
        for p in parallelism:
            d = self._workdir(f"makespan-n{n}-p{p}")
            try:
                counts = generate.generate(n, d, latency_ms=latency_ms)
                m = self.run(["apply", "--auto-approve", "--json", f"--parallelism={p}"], d, "makespan")
                summary = _last_summary(m.output)
                ops, chain = counts["replicas"], 1
                ideal = ideal_makespan(ops, chain, latency_ms / 1000.0, p)
                elapsed = summary.get("elapsed_s") if summary else None
                self.record(
                    n, f"makespan_p{p}", m, resources=counts["resources"], parallelism=p, latency_ms=latency_ms,
                    provider_ops=ops, longest_chain=chain, ideal_s=round(ideal, 4),
                    makespan_s=elapsed, ratio_to_ideal=round(elapsed / ideal, 3) if elapsed and ideal else None,
                )
            finally:
                self._cleanup(d)


@contextlib.contextmanager
def fresh_schema(url: str, name: str):
    """`url` with its search path set to a new, empty schema `name` (dropped afterwards)."""
    import psycopg
    from urllib.parse import quote

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={name}', safe='')}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def backend_ratios(records: list[dict[str, Any]]) -> None:
    """Give each PostgreSQL record the ratio of its wall time to the SQLite record of the same (n, step)."""
    lite = {(r["n"], r["step"]): r["wall_s"] for r in records if r.get("backend") == "sqlite"}
    for r in records:
        base = lite.get((r["n"], r["step"]))
        if r.get("backend") == "postgres" and base and r["wall_s"] is not None:
            r["ratio_to_sqlite"] = round(r["wall_s"] / base, 2)


def ideal_makespan(ops: int, chain: int, latency_s: float, parallelism: int) -> float:
    """The least time `ops` provider calls of `latency_s` can take: the longest chain of
    dependent calls, or all calls spread evenly over `parallelism` workers, whichever is larger."""
    return max(chain * latency_s, ops * latency_s / parallelism)


def _last_summary(output: str) -> dict[str, Any] | None:
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("type") == "summary":
                return ev
    return None


def print_table(records: list[dict[str, Any]], info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"infraplan benchmarks: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, "
                    f"Python {info['python']}")
    backends = any("backend" in r and r["backend"] == "postgres" for r in records)
    cols = ("n", "step") + (("state", ) if backends else ()) + ("wall s", "cpu s", "peak RSS MB", "ratio to ideal") \
        + (("ratio to SQLite",) if backends else ()) + ("note",)
    for col in cols:
        t.add_column(col, justify="left" if col in ("step", "state", "note") else "right")
    for r in records:
        def f(v, fmt="{:.3f}"):
            return "" if v is None else fmt.format(v)
        row = [str(r["n"]), r["step"]] + ([r.get("backend", "")] if backends else []) + [
            f(r["wall_s"]), f(r["cpu_s"]), f(r["peak_rss_mb"], "{:.1f}"), f(r.get("ratio_to_ideal"), "{:.2f}")]
        row += [f(r.get("ratio_to_sqlite"), "{:.2f}")] if backends else []
        t.add_row(*row, r.get("note", ""))
    Console(width=160).print(t)


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _steps(text: str) -> set[str]:
    steps = {s.strip() for s in text.split(",") if s.strip()}
    unknown = steps - set(ALL_STEPS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown step(s) {', '.join(sorted(unknown))}; known: {', '.join(ALL_STEPS)}")
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=_ints, default=[100, 1000], help="resource counts N (default 100,1000)")
    p.add_argument("--steps", type=_steps, default=set(ALL_STEPS), help=f"comma list of {', '.join(ALL_STEPS)} (default all)")
    p.add_argument("--json", dest="json_out", type=Path, help="write the records here")
    p.add_argument("--latency-ms", type=float, default=50.0, help="makespan step: provider latency per call (default 50)")
    p.add_argument("--parallelism", type=_ints, default=[10, 50], help="makespan step: parallelisms (default 10,50)")
    p.add_argument("--makespan-n", type=int, default=1000, help="makespan step: N (default 1000)")
    p.add_argument("--infraplan", help="command that runs infraplan (default: the script beside this python)")
    p.add_argument("--no-compile", action="store_true",
                   help="measure infraplan compiled from source on every step (default: byte-compiled first, as installed)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--state", help="a postgresql:// URL: run the size steps on it too, beside SQLite "
                   "(each size in a fresh schema of that database, dropped after)")
    a = p.parse_args(argv)

    cmd = infraplan_command(a.infraplan)
    info = machine()
    info["bytecode"] = prepare_bytecode(cmd, compile_=not a.no_compile)
    runner = Runner(cmd, keep=a.keep, verbose=not a.quiet, env={"PYTHONDONTWRITEBYTECODE": "1"} if a.no_compile else None)
    jobs: list[tuple[int, Any]] = [(0, lambda: runner.startup(a.steps))]
    if a.steps & set(SIZE_STEPS):
        drift = "drift" in a.steps and has_command(cmd, "drift", runner.env)
        for n in a.sizes:
            jobs.append((n, lambda n=n: runner.size(n, a.steps, has_drift=drift)))
            if a.state:
                jobs.append((n, lambda n=n: runner.size(n, a.steps, has_drift=drift, state=a.state)))
    if "makespan" in a.steps:
        jobs.append((a.makespan_n, lambda: runner.makespan(a.makespan_n, a.latency_ms, a.parallelism)))
    status = 0
    for n, job in jobs:
        try:
            job()
        except StepFailed as exc:  # record it and go on with the next size
            print(f"error: {exc}", file=sys.stderr)
            runner.record(n, exc.step, None, error=str(exc).splitlines()[-1], note="failed: see error")
            status = 1
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    backend_ratios(runner.records)
    if a.json_out:
        a.json_out.write_text(json.dumps({"machine": info, "command": cmd, "records": runner.records}, indent=2) + "\n")
    print_table(runner.records, info)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (issue 20): `infraplan plan` of examples/multicloud through the SkyPilot plugin, cold and warm,
beside SkyPilot's own `sky launch --dryrun` of the same task.

    python benchmarks/warm_plugin.py [--runs 3] [--catalogs DIR] [--json results.json] [--keep] [--no-sky]

Everything runs offline over the real catalog rows in ../shared/catalogs (a copy under a
temporary SKY_RUNTIME_DIR, HOME in a temporary folder, as the tests do), with the installed
SkyPilot plugin (`infraplan plugins install skypilot`) mirrored into a temporary plugin folder,
so the warm worker's socket and log stay there. Each figure is one `infraplan plan --json
--refresh=false` process, timed from start to exit:

| step | what |
|---|---|
| `cold` | `INFRAPLAN_PLUGIN_KEEP=0`: a plugin process per command (what CI does) |
| `warm_start` | `INFRAPLAN_PLUGIN_KEEP=1`, the first plan: it starts the warm worker |
| `warm` | the next plans, nothing changed (target <= 0.8 s) |
| `warm_changed` | a plan after the fleet's accelerators change to ones not planned before, so the optimizer runs: A100-80GB:8, then H200:8 (target <= 1.5 s) |
| `sky_api_start` | `sky api start`: SkyPilot's local API server, its own long-lived process (what `sky launch` starts when none runs) |
| `sky_dryrun` | `sky launch --dryrun -y task.yaml` with the plugin's SkyPilot, the API server running, for the fleet's resources as infraplan asks SkyPilot for them |

Every warm plan's JSON (less `created_at`) is compared with a cold plan of the same config.
SkyPilot's dry run needs clouds enabled: the benchmark records AWS, GCP, Lambda and RunPod as
enabled in its temporary SkyPilot state after the API server's first (untimed) dry run has checked
them (what `sky check` would record, with credentials); offline, the dry run
then stops after the optimizer, when it fetches AWS's image catalog (not in the shared subset),
so its figure covers the CLI, the API server request and the optimizer, and its chosen row is
checked against infraplan's choice. Its API server is stopped at the end.

Prints one line per measurement and a summary; `--json` writes {"machine", "records", "summary"}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run import machine, prepare_bytecode

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "multicloud"
#: accelerators the changed plans move to, each new to the worker: the catalog subset's 8-GPU types (the
#: example's tp_size is 8) on which the 70B model fits, on AWS us-east-1 or GCP us-central1
CHANGES = ("A100-80GB:8", "H200:8")
TARGETS = {"warm": 0.8, "warm_changed": 1.5}

SEED_CLOUDS = """\
from sky import check, global_user_state, skypilot_config
from sky.clouds import cloud
ws = skypilot_config.get_active_workspace()
global_user_state.set_allowed_clouds(check._get_workspace_allowed_clouds(ws), ws)
global_user_state.set_enabled_clouds(["AWS", "GCP", "Lambda", "RunPod"], cloud.CloudCapability.COMPUTE, ws)
"""


def installed_plugin() -> Path:
    sys.path.insert(0, str(ROOT))
    from infraplan.providers.plugin.location import plugin_dir, plugin_python

    if plugin_python("skypilot") is None:
        raise SystemExit("the skypilot plugin is not installed: infraplan plugins install skypilot")
    return plugin_dir("skypilot")


def mirror(installed: Path, root: Path) -> Path:
    """The installed plugin virtualenv, by symlink, under `root` (as tests/helpers/plugins.py does)."""
    target = root / "skypilot"
    (target / "bin").mkdir(parents=True)
    (target / "bin" / "python").symlink_to(installed / "bin" / "python")
    (target / "bin" / "sky").symlink_to(installed / "bin" / "sky")
    shutil.copy(installed / "pyvenv.cfg", target / "pyvenv.cfg")
    (target / "lib").symlink_to(installed / "lib")
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> tuple[float, int, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, proc.returncode, proc.stdout, proc.stderr


def without_time(out: str) -> dict[str, Any]:
    plan = json.loads(out)
    plan.pop("created_at", None)
    return plan


def set_accelerators(cfg: Path, value: str) -> None:
    main = cfg / "main.yaml"
    main.write_text(re.sub(r"(?m)^(    accelerators: ).*$", rf"\g<1>{value}", main.read_text()))


def task_yaml(cfg: Path, plan: dict[str, Any]) -> str:
    """The fleet as a SkyPilot task: the candidate resources infraplan gives SkyPilot's optimizer, in order
    (from the planned attributes of the fleet's first replica and the provider block's settings)."""
    import yaml

    sys.path.insert(0, str(ROOT))
    from infraplan_providers.skypilot.settings import SkyPilotSettings
    from infraplan_providers.skypilot.translate import candidate_kwargs

    attrs = next(c for c in plan["changes"] if c["address"] == "fleet.chat[0]")["after"]
    block = yaml.safe_load((cfg / "main.yaml").read_text())["provider"]["sky"]
    settings = SkyPilotSettings.model_validate(block.get("settings") or {})
    return yaml.safe_dump({"name": "anchor", "resources": {"ordered": candidate_kwargs(attrs, settings)},
                           "run": "echo anchor"}, sort_keys=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs of each step [3]")
    p.add_argument("--catalogs", type=Path,
                   default=Path(os.environ.get("INFRAPLAN_SKY_CATALOGS") or ROOT.parent / "shared" / "catalogs"),
                   help="SkyPilot catalog rows (a folder holding v8/) [$INFRAPLAN_SKY_CATALOGS, else ../shared/catalogs]")
    p.add_argument("--json", dest="json_out", type=Path, help="write the records here")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--no-sky", action="store_true", help="skip SkyPilot's own dry run")
    a = p.parse_args()
    if not (a.catalogs / "v8").is_dir():
        raise SystemExit(f"no SkyPilot catalogs at {a.catalogs} (--catalogs)")
    installed = installed_plugin()
    bytecode = prepare_bytecode([sys.executable], compile_=True)
    tmp = Path(tempfile.mkdtemp(prefix="infraplan-warm-bench-"))
    runtime, home, plugins, cfg = tmp / "sky-runtime", tmp / "home", tmp / "plugins", tmp / "cfg"
    shutil.copytree(a.catalogs / "v8", runtime / ".sky" / "catalogs" / "v8")
    home.mkdir()
    plugin = mirror(installed, plugins)
    shutil.copytree(EXAMPLE, cfg, ignore=shutil.ignore_patterns("*.db", ".infraplan"))
    main_yaml = cfg / "main.yaml"
    main_yaml.write_text(main_yaml.read_text().replace("    type: skypilot\n",
                                                       "    type: skypilot\n    isolation: plugin\n"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFRAPLAN_PLUGIN", "PYTHON"))}
    env.update(HOME=str(home), SKY_RUNTIME_DIR=str(runtime), AWS_EC2_METADATA_DISABLED="true", NO_COLOR="1",
               INFRAPLAN_PLUGIN_DIR=str(plugins), INFRAPLAN_PLUGIN_IDLE="10m")
    plan_argv = [sys.executable, "-m", "infraplan", "plan", str(cfg), "--refresh=false", "--json",
                 "--state", str(tmp / "s.db")]
    records: list[dict[str, Any]] = []

    def record(step: str, wall: float, **extra: Any) -> None:
        records.append({"step": step, "wall_s": round(wall, 3), **extra})
        notes = " ".join(f"{k}={v}" for k, v in extra.items())
        print(f"{step:<18} {wall:7.3f} s  {notes}", flush=True)

    def plan(step: str, keep: str, accelerators: str = "H100:8") -> dict[str, Any]:
        set_accelerators(cfg, accelerators)
        wall, code, out, err = timed(plan_argv, dict(env, INFRAPLAN_PLUGIN_KEEP=keep), tmp)
        if code != 0:
            raise SystemExit(f"{step}: infraplan plan exited {code}: {err.strip()[-2000:]}")
        got = without_time(out)
        record(step, wall, accelerators=accelerators)
        return got

    try:
        cold = {}
        for _ in range(a.runs):
            cold["H100:8"] = plan("cold", "0")
        for acc in CHANGES:
            cold[acc] = plan("cold", "0", acc)
        first = plan("warm_start", "1")
        same = [first == cold["H100:8"]]
        for _ in range(a.runs):
            same.append(plan("warm", "1") == cold["H100:8"])
        for acc in CHANGES:
            same.append(plan("warm_changed", "1", acc) == cold[acc])
            plan("warm", "1")  # back to H100:8: remembered, not a change
        set_accelerators(cfg, "H100:8")
        status = subprocess.run([sys.executable, "-m", "infraplan", "plugins", "status", "--json"],
                                env=dict(env, INFRAPLAN_PLUGIN_KEEP="1"), capture_output=True, text=True)
        workers = json.loads(status.stdout)["workers"] if status.returncode == 0 else []
        unit = next(c for c in cold["H100:8"]["changes"] if c["address"] == "fleet.chat")["cost"]["unit"]
        chose = f"{unit['cloud']} {unit['instance_type']}{'[Spot]' if unit['use_spot'] else ''} {unit['hourly']:.2f}"
        sky_rows: list[str] = []
        if not a.no_sky:
            sky_rows = sky_anchor(a.runs, plugin, tmp, env, task_yaml(cfg, cold["H100:8"]), record)
        subprocess.run([sys.executable, "-m", "infraplan", "plugins", "stop"], env=env, capture_output=True)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    def med(step: str) -> float | None:
        xs = [r["wall_s"] for r in records if r["step"] == step]
        return round(statistics.median(xs), 3) if xs else None

    summary = {"median_s": {s: med(s) for s in ("cold", "warm_start", "warm", "warm_changed", "sky_api_start",
                                                "sky_dryrun")},
               "targets_s": TARGETS, "warm_plans_equal_cold": all(same), "infraplan_chose": chose,
               "sky_chose": sky_rows, "warm_workers_seen": len(workers)}
    summary["targets_met"] = {k: (summary["median_s"][k] or float("inf")) <= v for k, v in TARGETS.items()}
    print(json.dumps(summary, indent=2))
    if a.json_out:
        info = dict(machine(), bytecode=bytecode, runs=a.runs)
        a.json_out.write_text(json.dumps({"machine": info, "records": records, "summary": summary}, indent=2) + "\n")
    return 0 if all(same) else 1


def sky_anchor(runs: int, plugin: Path, tmp: Path, env: dict[str, str], task: str, record) -> list[str]:
    """`sky api start`, then `sky launch --dryrun` of the task `runs` times; its chosen rows."""
    sky_env = dict(env, SKYPILOT_API_SERVER_LOCAL_PORT=str(free_port()))
    (tmp / "task.yaml").write_text(task)
    chosen: list[str] = []
    try:
        wall, code, _out, err = timed([str(plugin / "bin" / "sky"), "api", "start"], sky_env, tmp, timeout=300)
        record("sky_api_start", wall, exit=code)
        if code != 0:
            print(f"  sky api start failed: {err.strip()[-500:]}", flush=True)
            return []
        # the server's first launch checks the clouds (none here, offline) and records what it found; then
        # they are recorded as enabled (a dry run before its first check still fails)
        dry = [str(plugin / "bin" / "sky"), "launch", "--dryrun", "-y", "task.yaml"]
        timed(dry, sky_env, tmp, timeout=300)
        subprocess.run([str(plugin / "bin" / "python"), "-c", SEED_CLOUDS], env=sky_env, cwd=tmp, check=True,
                       capture_output=True)
        for i in range(runs):
            wall, code, out, err = timed(dry, sky_env, tmp, timeout=300)
            text = re.sub(r"\x1b\[[0-9;]*m", "", out + err)
            row = next((line.split() for line in text.splitlines() if "✔" in line), None)
            reached = "optimizer" if "Considered resources" in text else "not the optimizer"
            pick = f"{row[0].lower()} {row[2]} {row[-2]}" if row and len(row) >= 4 else None  # cloud, type, $/h
            if pick:
                chosen.append(pick)
            record("sky_dryrun", wall, exit=code, reached=reached, chose=pick)
            if not row:
                print("  sky said: " + " | ".join(text.strip().splitlines()[-3:]), flush=True)
    finally:
        subprocess.run([str(plugin / "bin" / "sky"), "api", "stop"], env=sky_env, cwd=tmp, capture_output=True,
                       timeout=120)
    return sorted(set(chosen))


if __name__ == "__main__":
    sys.exit(main())

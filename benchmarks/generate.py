"""Write a benchmark configuration of N resources on the `null` provider.

    python benchmarks/generate.py N DIR [--versions 4] [--latency-ms 0] [--per-file 500]
    python benchmarks/generate.py DIR --bump VERSION_INDEX

The shape is the one of issue 6: N/5 groups, each a fleet aggregate `fleet.gK` and
its four replicas `fleet.gK[0..3]` (5 resources), every group serving one of
`--versions` model versions `model.v0..`, round robin, so bumping one version's
revision touches 1/versions of the groups. The model blocks are resources too:
the state holds 5 * (N // 5) + versions resources.

Files, as a user would split them: `providers.yaml`, `models.yaml` and
`fleets-000.yaml`, `fleets-001.yaml`, ... with `--per-file` fleets each.
`--bump K` rewrites the revision of `model.vK` in `models.yaml` in place.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import yaml

PROVIDER = "bench"  # the block name; its type is "null" (a bare `null:` key would be YAML's null)
MODELS_FILE = "models.yaml"
REPLICAS = 4
GROUP_SIZE = REPLICAS + 1


def revision(version: int) -> str:
    """The initial commit-like revision of model `version`."""
    return hashlib.sha1(f"v{version}".encode()).hexdigest()[:12]


def groups_for(n: int) -> int:
    return n // GROUP_SIZE


def _dump(path: Path, header: str, body: dict) -> None:
    text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
    path.write_text(f"# {header}\n{text}")


def generate(n: int, out: Path, *, versions: int = 4, latency_ms: float = 0.0, per_file: int = 500) -> dict:
    """Write the configuration into `out` (emptied of earlier generated files); returns counts."""
    if n < GROUP_SIZE:
        raise ValueError(f"N must be at least {GROUP_SIZE} (one fleet and its {REPLICAS} replicas)")
    if versions < 1 or per_file < 1:
        raise ValueError("--versions and --per-file must be positive")
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("fleets-*.yaml"), out / MODELS_FILE, out / "providers.yaml"]:
        old.unlink(missing_ok=True)
    groups = groups_for(n)

    provider = {"type": "null", "settings": {"latency_ms": latency_ms}}
    _dump(out / "providers.yaml", "benchmark provider: resources that live only in state",
          {"provider": {PROVIDER: provider}})
    models = {
        f"v{v}": {
            "source": f"hf://bench/model-{v}",
            "revision": revision(v),
            "served_name": f"bench-{v}",
            "parameters": 8.0e9,
            "dtype": "bfloat16",
            "owner": "bench",
        }
        for v in range(versions)
    }
    _dump(out / MODELS_FILE, f"{versions} model versions", {"model": models})

    files = 0
    for start in range(0, groups, per_file):
        fleets = {}
        for k in range(start, min(start + per_file, groups)):
            fleets[f"g{k}"] = {
                "provider": PROVIDER,
                "model": f"model.v{k % versions}",
                "replicas": REPLICAS,
                "accelerators": "H100:1",
                "engine": {"type": "sim", "args": {"context_length": 8192, "tp_size": 1}},
                "labels": {"group": f"g{k}", "tier": "bench"},
            }
        _dump(out / f"fleets-{files:03d}.yaml", f"fleets g{start}..g{start + len(fleets) - 1}", {"fleet": fleets})
        files += 1
    return {"groups": groups, "replicas": groups * REPLICAS, "models": versions,
            "resources": groups * GROUP_SIZE + versions, "files": files + 2}


def bump(out: Path, version: int) -> str:
    """Give `model.v<version>` a new revision in place; returns it."""
    path = out / MODELS_FILE
    if not path.is_file():
        raise ValueError(f"{path} does not exist: generate the configuration first")
    lines = path.read_text().splitlines(keepends=True)
    doc = yaml.safe_load("".join(lines))
    name = f"v{version}"
    if name not in (doc.get("model") or {}):
        raise ValueError(f"there is no model.{name} in {path}")
    new = hashlib.sha1(f"{doc['model'][name]['revision']}+1".encode()).hexdigest()[:12]
    doc["model"][name]["revision"] = new
    header = lines[0] if lines and lines[0].startswith("#") else ""
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return new


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("args", nargs="+", metavar="N DIR", help="resource count and output directory (DIR alone with --bump)")
    p.add_argument("--versions", type=int, default=4, help="model versions (default 4)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="null provider latency per operation (default 0)")
    p.add_argument("--per-file", type=int, default=500, help="fleets per file (default 500)")
    p.add_argument("--bump", type=int, metavar="VERSION_INDEX", help="rewrite model.vK's revision in place")
    a = p.parse_args(argv)
    try:
        if a.bump is not None:
            if len(a.args) not in (1, 2):
                p.error("with --bump give DIR (or N DIR)")
            new = bump(Path(a.args[-1]), a.bump)
            print(f"model.v{a.bump} revision -> {new}")
            return 0
        if len(a.args) != 2:
            p.error("give N and DIR")
        try:
            n = int(a.args[0])
        except ValueError:
            p.error(f"N must be an integer, got {a.args[0]!r}")
        counts = generate(n, Path(a.args[1]), versions=a.versions, latency_ms=a.latency_ms, per_file=a.per_file)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{counts['resources']} resources ({counts['groups']} fleets x {GROUP_SIZE} + {counts['models']} models) "
          f"in {counts['files']} files under {a.args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

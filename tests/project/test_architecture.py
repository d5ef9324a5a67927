"""The layout holds: import-linter's contracts pass, they can fail, and no unit imports in a circle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx
import pytest
from helpers.paths import REPO

ROOT = REPO
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is in the test extras")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_contracts_are_kept():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    """A state module that imports the CLI (even inside a function) must fail CI."""
    for name in ("infraplan", "infraplan_providers"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "infraplan" / "state" / "lock.py", "a") as f:
        f.write("\n\ndef _sneaky():\n    from infraplan.cli import main  # noqa: F401\n")
    r = _lint(tmp_path)
    assert r.returncode != 0 and "infraplan.state.lock -> infraplan.cli" in r.stdout.replace("\n", " ").replace("  ", " ") \
        or "infraplan.cli" in r.stdout, r.stdout


def test_no_import_cycle_between_modules():
    """Counting imports inside functions too, no module reaches itself through others."""
    graph = grimp.build_graph("infraplan", "infraplan_providers")
    g = nx.DiGraph()
    for m in graph.modules:
        for dep in graph.find_modules_directly_imported_by(m):
            # a package's __init__ re-exporting its own submodules is not a cycle of units
            if not (dep.startswith(m + ".") or m.startswith(dep + ".")):
                g.add_edge(m, dep)
    cycles = list(nx.simple_cycles(g))
    assert cycles == [], cycles[:5]

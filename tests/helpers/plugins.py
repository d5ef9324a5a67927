"""Plugin virtualenvs for tests: this venv, seen by the plugin host as an installed plugin."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def install_plugin_venv(root: Path, name: str) -> Path:
    """Make ``root/NAME`` a plugin virtualenv that is this test's own venv; returns it.

    Its ``bin/python`` is this interpreter, with this venv's ``pyvenv.cfg`` and ``lib`` beside it,
    so the worker runs in a separate process with the same packages (infraplan itself it loads
    by path, as for a real plugin).
    """
    target = root / name
    (target / "bin").mkdir(parents=True, exist_ok=True)
    if not (target / "bin" / "python").exists():
        (target / "bin" / "python").symlink_to(sys.executable)
        cfg = Path(sys.prefix) / "pyvenv.cfg"
        if cfg.exists():  # a venv: the same site-packages in the plugin process
            shutil.copy(cfg, target / "pyvenv.cfg")
            (target / "lib").symlink_to(Path(sys.prefix) / "lib")
    return target


def mirror_plugin_venv(root: Path, name: str, source: Path) -> Path:
    """Make ``root/NAME`` stand for the installed plugin virtualenv `source` (same interpreter and packages,
    by symlink); returns it. What a warm worker writes beside its plugin (its run folder) then stays in `root`."""
    target = root / name
    (target / "bin").mkdir(parents=True, exist_ok=True)
    if not (target / "bin" / "python").exists():
        (target / "bin" / "python").symlink_to(source / "bin" / "python")
        shutil.copy(source / "pyvenv.cfg", target / "pyvenv.cfg")
        (target / "lib").symlink_to(source / "lib")
        manifest = source / "infraplan-plugin.json"
        if manifest.exists():
            shutil.copy(manifest, target / "infraplan-plugin.json")
    return target

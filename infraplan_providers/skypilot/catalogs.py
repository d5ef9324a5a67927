"""What SkyPilot reads once and keeps: its price catalogs and its config files.

SkyPilot loads a catalog CSV on first use and keeps it for the life of the process
(``sky.catalog.common.LazyDataFrame``), and reads its config (``~/.sky/config.yaml``,
``.sky.yaml``) likewise. `fingerprint` digests the files' paths, sizes and
modification times (no reading: it runs before every command), so a warm plugin
worker that read older files is not asked again (`SkyPilotProvider.warm_key`), and
the pricing cache (`pricing.estimate`) never answers from prices of other files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: SkyPilot's catalog layout under its runtime folder (``SKY_RUNTIME_DIR``, else home)
CATALOG_SUBDIR = Path(".sky") / "catalogs"


def catalog_dir() -> Path:
    """Where SkyPilot 0.14 keeps its catalogs: ``$SKY_RUNTIME_DIR/.sky/catalogs`` (``~/.sky/catalogs``)."""
    return Path(os.path.expanduser(os.environ.get("SKY_RUNTIME_DIR") or "~")) / CATALOG_SUBDIR


def config_files() -> list[Path]:
    """The SkyPilot config files a process here would read (whether or not they exist)."""
    if os.environ.get("SKYPILOT_CONFIG"):
        return [Path(os.path.expanduser(os.environ["SKYPILOT_CONFIG"]))]
    return [Path(os.path.expanduser(os.environ.get("SKYPILOT_GLOBAL_CONFIG") or "~/.sky/config.yaml")),
            Path(os.path.expanduser(os.environ.get("SKYPILOT_PROJECT_CONFIG") or ".sky.yaml")).absolute()]


def _stat(path: Path) -> list:
    try:
        st = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path), st.st_size, st.st_mtime_ns]


def fingerprint() -> str:
    """A digest of every catalog file and config file SkyPilot would read (see the module docstring)."""
    entries = []
    root = catalog_dir()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".lock"):  # SkyPilot's update locks: touched by readers, not data
                entries.append(_stat(Path(folder) / name))
    entries.append(["config", [_stat(p) for p in config_files()]])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:24]

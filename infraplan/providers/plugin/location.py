"""Where plugins live: one virtualenv per provider type under ``$INFRAPLAN_PLUGIN_DIR`` (``~/.infraplan/plugins``)."""

from __future__ import annotations

import os
from pathlib import Path


def plugin_root() -> Path:
    """``$INFRAPLAN_PLUGIN_DIR`` or ``~/.infraplan/plugins``."""
    return Path(os.environ.get("INFRAPLAN_PLUGIN_DIR") or Path.home() / ".infraplan" / "plugins")


def plugin_dir(name: str) -> Path:
    return plugin_root() / name


def plugin_python(name: str) -> Path | None:
    """The plugin venv's interpreter, if the plugin is installed."""
    for rel in ("bin/python", "Scripts/python.exe"):
        p = plugin_dir(name) / rel
        if p.exists():
            return p
    return None

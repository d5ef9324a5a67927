"""Which files a config path stands for, and how they compare with a stored copy."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


#: the access policy beside a config (`infraplan.policy.access`): not part of the config
ACCESS_POLICY_FILE = "infraplan.policy.yaml"


def config_file_paths(path: str | Path) -> list[Path]:
    """The files a config path stands for: its `*.yaml`/`*.yml` files by name (the access
    policy aside), or the one file."""
    p = Path(path)
    if p.is_dir():
        return sorted((f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()
                       and f.name != ACCESS_POLICY_FILE), key=lambda f: f.name)
    return [p] if p.is_file() else []


def differing_files(path: str | Path, stored: Mapping[str, str]) -> list[str]:
    """The file names (sorted) where the config at `path` differs from `stored` (name -> text,
    as the history keeps a config): changed, added or missing. Empty: the same config files."""
    current: dict[str, str | None] = {}
    for f in config_file_paths(path):
        try:
            current[f.name] = f.read_text()
        except (OSError, UnicodeDecodeError):
            current[f.name] = None  # unreadable: it cannot be the same
    return sorted(name for name in set(current) | set(stored) if current.get(name) != stored.get(name))

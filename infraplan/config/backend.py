"""The `backend:` block: where the state lives. It is read before anything else (commands
without a config, such as `state list`, read it from the current directory's files), so its
values are literal: no `${...}`, and one block in one file of a config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from infraplan.config.yaml_positions import Positions, load_yaml
from infraplan.diagnostics import Diagnostic, Location, did_you_mean, short_repr
from infraplan.errors import ConfigError
from infraplan.models.config import BackendBlock


@dataclass(frozen=True)
class Backend:
    """A config's backend block and where it is written."""

    block: BackendBlock
    location: Location | None

    def target(self, config_dir: Path) -> str:
        """The URL, or the SQLite path (relative paths are relative to the config directory)."""
        if self.block.url is not None:
            return self.block.url
        assert self.block.path is not None
        path = Path(self.block.path).expanduser()
        return str(path if path.is_absolute() else config_dir / path)


def validate_backend(raw: Any, pos: Positions) -> tuple[BackendBlock | None, list[Diagnostic]]:
    """The block written under `backend:` in one file, or its located problems."""
    where = ("backend",)
    if raw is None:
        return None, []
    if not isinstance(raw, dict):
        return None, [Diagnostic("backend must be a mapping with `url` or `path`", location=pos.nearest(where),
                                 path="backend")]
    diags = []
    for key, value in raw.items():
        if isinstance(value, str) and "${" in value:
            diags.append(Diagnostic(
                f"backend.{key} cannot use ${{...}}: the backend is read before variables; write the value, "
                "or set $INFRAPLAN_STATE", location=pos.nearest(where + (key,)), path=f"backend.{key}"))
    if diags:
        return None, diags
    try:
        return BackendBlock.model_validate(raw), []
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            loc = tuple(str(p) for p in e["loc"])
            path = where + loc
            if e["type"] == "extra_forbidden":
                summary = f"unknown key {short_repr(loc[-1])}{did_you_mean(loc[-1], list(BackendBlock.model_fields))}"
                location = pos.nearest(path, key=True)
            else:
                summary = e["msg"].removeprefix("Value error, ")
                location = pos.nearest(path)
            diags.append(Diagnostic(summary, location=location, path=".".join(path)))
        return None, diags


def _files(config_path: Path) -> list[Path]:
    if config_path.is_dir():
        return sorted((f for f in config_path.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()),
                      key=lambda f: f.name)
    return [config_path] if config_path.is_file() else []


def read_backend(config_path: str | Path) -> Backend | None:
    """The backend block of the config at `config_path` (a directory or one file), if it has one.

    A file that is not valid YAML is skipped here (loading the config reports it); a bad
    backend block, or one written in two files, is a ConfigError.
    """
    given = Path(config_path)
    found: Backend | None = None
    diags: list[Diagnostic] = []
    for file in _files(given):
        name = str(given / file.name) if given.is_dir() else str(given)
        try:
            data = file.read_bytes()
        except OSError:
            continue
        if b"backend" not in data:  # most files: not worth parsing twice
            continue
        value, pos, errors = load_yaml(data, name)
        if errors or not isinstance(value, dict) or "backend" not in value:
            continue
        block, problems = validate_backend(value["backend"], pos)
        diags += problems
        here = pos.key_at(("backend",))
        if block is None:
            continue
        if found is not None:
            diags.append(Diagnostic(f"backend is defined twice: at {found.location} and at {here}", location=here,
                                    path="backend"))
            continue
        found = Backend(block, here)
    if diags:
        raise ConfigError(diags)
    return found

"""Every example validates and points editors at the committed JSON Schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infraplan.config import validate_config
from helpers.paths import REPO

ROOT = REPO
EXAMPLES = ROOT / "examples"
SCHEMA = ROOT / "schemas" / "infraplan.schema.json"
HEADER = re.compile(r"^#\s*yaml-language-server:\s*\$schema=(\S+)\s*$")
EXAMPLE_DIRS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())


def _yaml_files(d: Path) -> list[Path]:
    return sorted(f for f in d.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())


def test_there_are_examples():
    assert EXAMPLE_DIRS, "examples/ has no example folders"


@pytest.mark.parametrize("example", EXAMPLE_DIRS, ids=lambda p: p.name)
def test_example_validates(example):
    assert _yaml_files(example), f"{example.name} has no config files"
    config, diags = validate_config(example, env={})
    errors = [d.one_line() for d in diags if d.severity == "error"]
    assert not errors, "\n".join(errors)
    assert config is not None and config.resources, f"{example.name} declares no models or fleets"


@pytest.mark.parametrize("example", EXAMPLE_DIRS, ids=lambda p: p.name)
def test_example_files_point_at_the_schema(example):
    for f in _yaml_files(example):
        first = f.read_text().splitlines()[0] if f.read_text() else ""
        m = HEADER.match(first)
        assert m, f"{f.relative_to(ROOT)} must start with `# yaml-language-server: $schema=...`"
        target = (f.parent / m.group(1)).resolve()
        assert target.is_file(), f"{f.relative_to(ROOT)}: schema {m.group(1)} does not exist"
        assert target == SCHEMA.resolve(), f"{f.relative_to(ROOT)} points at {target}, not {SCHEMA}"

"""Hostile inputs: each gives located one-line errors (or a clean plan), never a traceback or a hang."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from infraplan.cli.main import cli
from infraplan.config import yaml_positions
from infraplan.config.yaml_positions import load_yaml

LEVELS = "abcdefghi"
BOMB = "".join(
    f"{name}: &{name} [{', '.join(['x'] * 9 if i == 0 else [f'*{LEVELS[i - 1]}'] * 9)}]\n"
    for i, name in enumerate(LEVELS)
)  # 9**9 values once expanded

FLEET = """\
model:
  m:
    source: {source}
    parameters: 1.0e9
fleet:
  chat:
    provider: local
    model: model.m
    replicas: {replicas}
    accelerators: H100:1
    engine: {{type: sim}}
"""


def _cli(tmp_path: Path, *args: str):
    result = CliRunner().invoke(cli, [*args, str(tmp_path)], catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if "error:" in line]


def test_alias_bomb_is_refused_quickly_with_one_located_error(tmp_path: Path):
    (tmp_path / "main.yaml").write_text(BOMB)
    start = time.monotonic()
    result = _cli(tmp_path, "validate")
    assert time.monotonic() - start < 5
    assert result.exit_code != 0
    [error] = _errors(result.output)
    assert "too many YAML alias expansions" in error
    assert error.startswith(f"{tmp_path / 'main.yaml'}:")
    line = int(error.split(":")[1])
    assert 1 <= line <= len(LEVELS)


def test_few_aliases_expanding_to_too_many_values_are_refused(monkeypatch):
    monkeypatch.setattr(yaml_positions, "MAX_EXPANDED_NODES", 100)
    text = "a: &a [" + ", ".join(["x"] * 30) + "]\nb: [*a, *a, *a, *a]\n"
    value, _, diags = load_yaml(text, "wide.yaml")
    assert value is None
    [d] = diags
    assert "expand to more than 100 values" in d.summary
    assert (d.location.file, d.location.line) == ("wide.yaml", 1)


def test_ordinary_aliases_and_merges_still_load():
    text = "base: &b {x: 1, tags: [a, b]}\nm:\n  <<: *b\n  y: 2\nn: *b\n"
    value, _, diags = load_yaml(text, "ok.yaml")
    assert diags == []
    assert value["m"] == {"y": 2, "x": 1, "tags": ["a", "b"]}
    assert value["n"] == {"x": 1, "tags": ["a", "b"]}


@pytest.mark.parametrize("text", ["a: &a {b: *a}\n", "a: &a [1, *a]\n", "a: &a\n  <<: *a\n"])
def test_recursive_alias_is_refused(text: str):
    value, _, diags = load_yaml(text, "rec.yaml")
    assert value is None
    [d] = diags
    assert "recursive YAML alias" in d.summary
    assert (d.location.file, d.location.line) == ("rec.yaml", 1)


def test_recursive_alias_via_cli(tmp_path: Path):
    (tmp_path / "main.yaml").write_text("a: &a {b: *a}\n")
    result = _cli(tmp_path, "validate")
    assert result.exit_code != 0
    [error] = _errors(result.output)
    assert error.startswith(f"{tmp_path / 'main.yaml'}:1:") and "recursive YAML alias" in error


def test_huge_replicas_is_refused_at_validate_with_location(tmp_path: Path):
    (tmp_path / "main.yaml").write_text(FLEET.format(source="hf://org/m", replicas=10**12))
    result = _cli(tmp_path, "validate")
    assert result.exit_code != 0
    [error] = _errors(result.output)
    assert error.startswith(f"{tmp_path / 'main.yaml'}:9:15:")
    assert "1000" in error and "fleet.chat.replicas" in error


def test_huge_for_each_is_refused(tmp_path: Path):
    items = ", ".join(str(i) for i in range(1001))
    text = FLEET.format(source="hf://org/m", replicas=1) + f"    for_each: [{items}]\n"
    (tmp_path / "main.yaml").write_text(text)
    result = _cli(tmp_path, "validate")
    assert result.exit_code != 0
    [error] = _errors(result.output)
    assert "at most 1000" in error and "fleet.chat.for_each" in error


def test_long_local_source_plans_without_traceback(tmp_path: Path):
    (tmp_path / "main.yaml").write_text(FLEET.format(source="/" + "a" * 300, replicas=1))
    result = _cli(tmp_path, "plan")
    assert result.exit_code == 0, result.output
    assert "to add" in result.output


def test_source_over_2048_characters_is_refused(tmp_path: Path):
    (tmp_path / "main.yaml").write_text(FLEET.format(source="/" + "a" * 3000, replicas=1))
    result = _cli(tmp_path, "validate")
    assert result.exit_code != 0
    [error] = _errors(result.output)
    assert "2048" in error and "model.m.source" in error and f"{tmp_path / 'main.yaml'}:3:" in error

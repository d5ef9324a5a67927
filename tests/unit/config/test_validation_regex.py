"""User-supplied regular expressions run on RE2: linear time, and a located error for what RE2 refuses."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import ValidationError

from helpers.timing import within
from infraplan.config import load_config
from infraplan.errors import ConfigError
from infraplan.models.config import GoldenPrompt
from infraplan.rollout.golden import check_answer

CATASTROPHIC = "^(a+)+$"  # exponential on a backtracking engine: 13.6 s on Python's re for 28 a's and a '!'
VALUE = "a" * 28 + "!"

CONFIG = """\
variable:
  name:
    type: string
    default: {default}
    validation:
      - regex: {regex}
        error_message: name must be all a's
model:
  llama:
    source: hf://meta-llama/Llama-3.1-8B-Instruct
    revision: "0e9e39f"
fleet:
  chat:
    provider: local
    model: model.llama
    replicas: 0
    engine:
      type: sim
"""


def _load(tmp_path, regex: str, default: str):
    (tmp_path / "main.yaml").write_text(CONFIG.format(regex=json.dumps(regex), default=json.dumps(default)))
    return load_config(tmp_path)


def test_catastrophic_pattern_answers_at_once(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, CATASTROPHIC, VALUE)
    assert time.perf_counter() - t0 < within(1.0)
    [diag] = exc.value.diagnostics
    assert diag.summary == "name must be all a's"
    assert diag.path == "variable.name.validation[0]"


def test_matching_value_passes(tmp_path):
    assert _load(tmp_path, CATASTROPHIC, "a" * 28).variables["name"] == "a" * 28


@pytest.mark.parametrize("regex", ["^(?=x)", "(?<!a)b", r"(a)\1"])
def test_lookaround_and_backreferences_are_located_errors(tmp_path, regex):
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, regex, "x")
    [diag] = exc.value.diagnostics
    assert diag.path == "variable.name.validation[0].regex"
    assert (diag.location.line, diag.location.col) == (6, 16)
    assert "invalid regular expression" in diag.summary and "RE2 syntax is accepted" in diag.summary


def test_golden_prompt_regex_is_re2():
    with pytest.raises(ValidationError, match="RE2 syntax is accepted"):
        GoldenPrompt(prompt="x", regex="(?=a)")
    prompt = GoldenPrompt(prompt="x", regex=CATASTROPHIC)
    t0 = time.perf_counter()
    assert check_answer(prompt, VALUE, None) == [f"answer does not match /{CATASTROPHIC}/"]
    assert time.perf_counter() - t0 < within(1.0)

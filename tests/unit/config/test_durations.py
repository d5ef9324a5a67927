"""One Duration type: every duration in a config is checked at load, with its location."""

from __future__ import annotations

import pytest

from infraplan.config import validate_config
from infraplan.models.types import DurationError, parse_duration

CONFIG = """\
model:
  m:
    source: hf://org/m
fleet:
  web:
    model: model.m
    replicas: 2
    engine: {type: sim}
    rollout:
      strategy: blue_green
      rollback_window: {window}
router:
  gw:
    fleets: [fleet.web]
"""


def test_rollback_window_is_checked_at_load_with_its_location(tmp_path):
    """`rollback_window: "10 minutes"` used to pass `validate` and fail during the apply."""
    (tmp_path / "main.yaml").write_text(CONFIG.replace("{window}", '"10 minutes"'))
    config, diags = validate_config(tmp_path, env={})
    errors = [d for d in diags if d.severity == "error"]
    assert config is None and len(errors) == 1
    line = errors[0].one_line()
    assert "main.yaml:11:" in line and "fleet.web.rollout.rollback_window" in line and "positive duration" in line


def test_good_rollback_window_loads(tmp_path):
    (tmp_path / "main.yaml").write_text(CONFIG.replace("{window}", "1h30m"))
    config, diags = validate_config(tmp_path, env={})
    assert config is not None, [d.one_line() for d in diags]


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400),
                                           ("1h30m", 5400), ("1.5h", 5400), (30, 30.0)])
def test_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "90", "2 hours", "10 minutes", "0s", "-5m", "h", "1e9999s", True, "9" * 100 + "s"])
def test_refused(text):
    with pytest.raises(DurationError, match="positive duration"):
        parse_duration(text)

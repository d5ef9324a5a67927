"""A huge value in a config or on the command line is cut in every message (`short_repr`)."""

from __future__ import annotations

import pytest

from helpers.cli import SMALL_CONFIG, run

HUGE = "q" * 1_000_000
LONG_KEY = "k" * 1000  # YAML's limit for a plain key is 1024 characters


@pytest.mark.parametrize(("config", "args", "where"), [
    (SMALL_CONFIG.replace("    replicas:", f"    {LONG_KEY}: 1\n    replicas:"), (), "main.yaml:14:5: error: unknown key"),
    (SMALL_CONFIG.replace("model: model.llama", f"model: model.{HUGE}"), (), "main.yaml:13:12: error: unknown model"),
    (SMALL_CONFIG + f"{LONG_KEY}: {{}}\n", (), "main.yaml:22:1: error: unknown block type"),
    (SMALL_CONFIG, ("--var", f"{HUGE}=1"), "error: --var"),
    (SMALL_CONFIG, ("--var", f"replicas={HUGE}"), "error: variable 'replicas'"),
])
def test_a_huge_value_gives_one_short_line(tmp_path, config, args, where):
    (tmp_path / "main.yaml").write_text(config)
    result = run("validate", str(tmp_path), *args)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1 and where in lines[0], result.output[:500]
    assert "…" in lines[0] and len(lines[0]) < 400, lines[0][:500]

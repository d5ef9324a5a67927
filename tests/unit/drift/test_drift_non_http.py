"""Drift trusts the provider's read for resources that are not HTTP servers (null provider)."""

from __future__ import annotations

from click.testing import CliRunner

from infraplan.cli.main import cli

CONFIG = """
provider:
  bench: {type: "null"}
model:
  m: {source: hf://org/m, revision: abc1234}
fleet:
  f: {provider: bench, model: model.m, replicas: 3}
"""


def test_drift_over_state_only_resources_is_clean(tmp_path):
    (tmp_path / "main.yaml").write_text(CONFIG)
    runner = CliRunner()
    applied = runner.invoke(cli, ["apply", str(tmp_path), "--auto-approve"])
    assert applied.exit_code == 0, applied.output
    res = runner.invoke(cli, ["drift", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "No drift" in res.output and "Checked 3 replica(s)" in res.output

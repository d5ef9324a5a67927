"""`engine.args` is checked against the SGLang parser snapshot when the config loads (validate and plan).

The validator existed but nothing called it: `tp_szie: 8` planned and applied cleanly (on
SkyPilot, a paid GPU launch that then failed)."""

from __future__ import annotations

from click.testing import CliRunner

from infraplan.cli.main import cli
from infraplan.config import validate_config

CONFIG = """\
model:
  m:
    source: hf://org/m
fleet:
  web:
    model: model.m
    replicas: 1
    engine:
      type: sim
      args:
        context_length: 4096
        tp_szie: 8
        attention_backend: flashinfr
        mem_fraction_static: "lots"
"""


def test_every_bad_arg_is_reported_at_its_key_with_a_did_you_mean(tmp_path):
    (tmp_path / "main.yaml").write_text(CONFIG)
    config, diags = validate_config(tmp_path, env={})
    errors = [d.one_line() for d in diags if d.severity == "error"]
    assert config is None and len(errors) == 3, errors
    (tp,) = [e for e in errors if "tp_szie" in e]
    assert "main.yaml:12:9" in tp and "did you mean 'tp_size'" in tp and "fleet.web.engine.args.tp_szie" in tp
    assert any("flashinfr" in e and "flashinfer" in e for e in errors)
    assert any("mem_fraction_static" in e and "float" in e for e in errors)


def test_plan_refuses_it_too(tmp_path):
    (tmp_path / "main.yaml").write_text(CONFIG)
    result = CliRunner().invoke(cli, ["plan", str(tmp_path), "--refresh=false"])
    assert result.exit_code == 1 and "tp_szie" in result.output
    assert not (tmp_path / "infraplan.db").exists()

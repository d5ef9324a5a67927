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


def _fleet(engine: str) -> str:
    return f"""\
model:
  m:
    source: hf://org/m
fleet:
  web:
    model: model.m
    replicas: 1
    engine:
{engine}"""


def _errors(tmp_path, text: str) -> list[str]:
    (tmp_path / "main.yaml").write_text(text)
    _, diags = validate_config(tmp_path, env={})
    return [d.one_line() for d in diags if d.severity == "error"]


def test_unpinned_fleets_are_checked_against_the_newest_release(tmp_path):
    (err,) = _errors(tmp_path, _fleet("      type: sglang\n      args:\n        cuda_graph_max_bs: 256\n"))
    assert "main.yaml:11:9" in err and "unknown SGLang 0.5.23 server arg 'cuda_graph_max_bs'" in err
    assert "cuda_graph_max_bs_decode" in err


def test_a_pinned_release_is_the_parser_the_args_are_checked_against(tmp_path):
    pinned = "      type: sglang\n      sglang_version: \"0.5.5\"\n      args:\n        cuda_graph_max_bs: 256\n"
    assert _errors(tmp_path, _fleet(pinned)) == []
    (err,) = _errors(tmp_path, _fleet(pinned.replace("cuda_graph_max_bs: 256", "attn_dp_size: 2")))
    assert "main.yaml:12:9" in err and "unknown SGLang 0.5.5 server arg 'attn_dp_size'" in err
    (err,) = _errors(tmp_path, _fleet(pinned.replace("cuda_graph_max_bs: 256", "quantization: marlin")
                                      .replace("0.5.5", "0.5.23")))
    assert "'marlin' is not one of SGLang 0.5.23's choices for --quantization" in err


def test_an_unsupported_release_is_a_located_error_naming_the_supported_ones(tmp_path):
    (err,) = _errors(tmp_path, _fleet("      type: sglang\n      sglang_version: \"0.4.9\"\n      args:\n"
                                      "        tp_szie: 2\n"))
    assert "main.yaml:10:23" in err and "SGLang 0.4.9 is not supported" in err
    assert "0.5.5, 0.5.6.post2, 0.5.23" in err and "fleet.web.engine.sglang_version" in err
    (tmp_path / "main.yaml").write_text(_fleet("      sglang_version: \"0.4.9\"\n"))
    result = CliRunner().invoke(cli, ["plan", str(tmp_path), "--refresh=false"])
    assert result.exit_code == 1 and "SGLang 0.4.9 is not supported" in result.output


def test_deprecated_args_warn(tmp_path):
    (tmp_path / "main.yaml").write_text(_fleet("      args:\n        enable_dp_attention: true\n"))
    config, diags = validate_config(tmp_path, env={})
    (warning,) = [d.one_line() for d in diags if d.severity == "warning" and "deprecated" in d.summary]
    assert config is not None and "deprecated in SGLang 0.5.23" in warning and "attn-dp-size" in warning

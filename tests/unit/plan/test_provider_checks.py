"""Provider names and settings are checked by `validate`, located, before any provider runs."""

from __future__ import annotations

from helpers.cli import SMALL_CONFIG, run


def _write(tmp_path, text: str):
    (tmp_path / "main.yaml").write_text(text)
    return str(tmp_path)


def test_a_huge_provider_name_is_one_short_located_line(tmp_path):
    name = "x" * 1_000_000
    cfg = _write(tmp_path, SMALL_CONFIG.replace("provider: local", f"provider: {name}"))
    for command in (["validate"], ["plan", "--refresh=false"]):
        result = run(*command, cfg, "--state", str(tmp_path / "s.db"))
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        first = result.output.splitlines()[0]
        assert first.startswith(f"{cfg}/main.yaml:12:15: error: unknown provider 'xxx"), first
        assert "…" in first and len(first) < 300, first[:400]
        assert max(map(len, result.output.splitlines())) < 300
    assert not (tmp_path / "s.db").exists()


def test_an_unused_provider_block_is_checked_too(tmp_path):
    cfg = _write(tmp_path, SMALL_CONFIG + "provider:\n  quiet:\n    type: 'null'\n    settings:\n      latency_ms: -1\n")
    result = run("validate", cfg)
    assert result.exit_code == 1, result.output
    assert f"{cfg}/main.yaml:26:19: error: null provider setting: Input should be greater than or equal to 0" \
           " (at provider.quiet.settings.latency_ms)" in result.output, result.output


def test_known_providers_and_settings_pass(tmp_path):
    cfg = _write(tmp_path, SMALL_CONFIG + "provider:\n  local:\n    settings:\n      port_range: 31000-31100\n"
                 "  sky:\n    type: skypilot\n    settings:\n      placement: service\n")
    result = run("validate", cfg)
    assert result.exit_code == 0, result.output
    assert "Success!" in result.output

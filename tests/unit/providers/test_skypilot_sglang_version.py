"""The SGLang release a SkyPilot fleet runs: the fleet's pin, else the provider's setting (the newest by default)."""

from __future__ import annotations

from infraplan.config import validate_config
from infraplan.plan.expand import expand
from infraplan.providers.contract import ProviderContext, ResourceKind
from infraplan.serving.sglang_args import DEFAULT_VERSION
from infraplan_providers.skypilot.provider import SkyPilotProvider
from infraplan_providers.skypilot.settings import SkyPilotSettings
from infraplan_providers.skypilot.translate import run_command, setup_script

ATTRS = {"fleet": "fleet.chat", "index": 0, "model_source": "hf://org/m", "accelerators": "H100:1",
         "args": {"cuda_graph_max_bs_decode": 64}}


def provider(tmp_path, **settings) -> SkyPilotProvider:
    return SkyPilotProvider(ProviderContext(project_dir=tmp_path, state_path=tmp_path / "s.db", runtime_dir=tmp_path,
                                            settings=settings, name="sky"))


def test_the_default_install_is_the_newest_supported_release():
    assert SkyPilotSettings().sglang_version == DEFAULT_VERSION == "0.5.23"
    assert "pip install 'sglang[all]==0.5.23'" in setup_script(SkyPilotSettings(), ATTRS)


def test_a_fleets_pin_is_what_is_installed_and_what_its_flags_are_for():
    s = SkyPilotSettings()
    pinned = dict(ATTRS, sglang_version="0.5.5", args={"cuda_graph_max_bs": 64})
    assert "'sglang[all]==0.5.5'" in setup_script(s, pinned)
    assert "--cuda-graph-max-bs 64" in run_command(pinned, s)
    assert "--cuda-graph-max-bs-decode 64" in run_command(ATTRS, s)
    assert "'sglang[all]==0.5.6.post2'" in setup_script(SkyPilotSettings(sglang_version="0.5.6.post2"), ATTRS)


def test_an_unsupported_setting_is_a_settings_error_naming_the_supported_ones(tmp_path):
    (diag,) = provider(tmp_path, sglang_version="0.4.0").validate_settings()
    assert diag.path == "provider.sky.settings.sglang_version"
    assert "SGLang 0.4.0 is not supported" in diag.summary and "0.5.5, 0.5.6.post2, 0.5.23" in diag.summary


def test_unpinned_fleets_args_are_checked_against_an_older_setting(tmp_path):
    old = provider(tmp_path, sglang_version="0.5.5")
    errors = [d.summary for d in old.plan(ResourceKind.REPLICA, None, ATTRS).diagnostics if d.severity == "error"]
    assert len(errors) == 1 and "unknown SGLang 0.5.5 server arg 'cuda_graph_max_bs_decode'" in errors[0]
    assert "engine.sglang_version" in errors[0]
    # the fleet's own pin was checked when the config loaded; the setting does not apply to it
    pinned = dict(ATTRS, sglang_version="0.5.23")
    assert not [d for d in old.plan(ResourceKind.REPLICA, None, pinned).diagnostics if d.severity == "error"]
    assert not [d for d in provider(tmp_path).plan(ResourceKind.REPLICA, None, ATTRS).diagnostics if d.severity == "error"]


def test_a_pin_reaches_the_replicas_attributes_and_no_pin_adds_nothing(tmp_path):
    (tmp_path / "main.yaml").write_text("""\
model:
  m: {source: hf://org/m}
fleet:
  pinned:
    model: model.m
    engine: {sglang_version: "0.5.5"}
  plain:
    model: model.m
""")
    config, diags = validate_config(tmp_path, env={})
    assert config is not None, [d.one_line() for d in diags]
    desired = expand(config)
    assert desired["fleet.pinned[0]"].attributes["sglang_version"] == "0.5.5"
    assert "sglang_version" not in desired["fleet.plain[0]"].attributes


def test_secret_args_reach_the_vm_as_a_skypilot_secret_never_in_the_run_text(tmp_path):
    """SkyPilot stores and shows `run`; the key travels as a secret and a 0600 `--config` file."""
    import json
    import os
    import stat
    import subprocess

    from infraplan_providers.skypilot.translate import SECRET_ARGS_ENV, secret_args_env

    key = "sk-vm-9c1e'\"$(touch /tmp/pwned)"  # quotes and a command substitution stay inert
    attrs = dict(ATTRS, args={"api_key": key, "tp_size": 1})
    run = run_command(attrs, SkyPilotSettings())
    assert key not in run and "sk-vm" not in run
    assert '--config "$HOME/.infraplan/sglang-secret-args.yaml"' in run and "--tp-size 1" in run
    env = secret_args_env(attrs)
    assert json.loads(env[SECRET_ARGS_ENV]) == {"api_key": key}
    write = run.split(" && python ")[0]
    out = subprocess.run(["bash", "-c", write], env={**os.environ, "HOME": str(tmp_path), **env}, check=True)
    assert out.returncode == 0
    f = tmp_path / ".infraplan" / "sglang-secret-args.yaml"
    assert json.loads(f.read_text()) == {"api_key": key}  # JSON is YAML: SGLang's --config reads it
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and not os.path.exists("/tmp/pwned")
    assert "--config" not in run_command(ATTRS, SkyPilotSettings()) and not secret_args_env(ATTRS)

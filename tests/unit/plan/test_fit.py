"""GPU fit: the arithmetic, config.json figures, and the plan error/warning it produces."""

from __future__ import annotations

import json

from click.testing import CliRunner

from infraplan.cli.main import cli
from infraplan.cost.fit import GIB, check_fit, load_architecture

LLAMA_8B = {"parameters": 8.03e9, "dtype": "bfloat16",
            "architecture": {"num_layers": 32, "num_kv_heads": 8, "head_dim": 128}}
LLAMA_70B = {"parameters": 70.6e9, "dtype": "bfloat16",
             "architecture": {"num_layers": 80, "num_kv_heads": 8, "head_dim": 128}}


def test_weights_kv_and_overhead_add_up():
    res = check_fit(LLAMA_8B, {"context_length": 8192, "max_running_requests": 16, "mem_fraction_static": 0.85},
                    "H100:1")
    weights = 8.03e9 * 2 / GIB
    kv = 32 * 8 * 128 * 2 * 2 * 8192 * 16 / GIB  # 16 GiB exactly
    assert res.weights_gib == weights
    assert res.kv_cache_gib == kv == 16.0
    assert abs(res.overhead_gib - 80 * 0.15) < 1e-9
    assert abs(res.required_gib - (weights + kv + 12.0)) < 1e-9
    assert res.status == "fits"
    assert any("32 layers x 8 kv heads x 128 head dim" in line for line in res.lines)


def test_70b_does_not_fit_one_h100_but_fits_eight_with_tp8():
    one = check_fit(LLAMA_70B, {"context_length": 4096}, "H100:1")
    assert one.status == "does_not_fit"
    assert "> 80 GiB per H100" in one.lines[-1]
    eight = check_fit(LLAMA_70B, {"context_length": 4096, "tp_size": 8}, "H100:8")
    assert eight.status == "fits"
    assert abs(eight.weights_gib - 70.6e9 * 2 / 8 / GIB) < 1e-9
    # 8 kv heads over tp 8: one kv head per GPU
    assert abs(eight.kv_cache_gib - 80 * 1 * 128 * 2 * 2 * 4096 / GIB) < 1e-9


def test_tight_fit_and_kv_dtype():
    # fp8 weights of a 70B model on one H100: 65.75 GiB + 9.6 GiB overhead -> over 90% of 80 GiB
    res = check_fit(dict(LLAMA_70B, dtype="fp8"), {}, "H100:1", gpu_memory=80)
    assert res.status == "tight", res.detail()
    res = check_fit(dict(LLAMA_70B, dtype="fp8"), {"mem_fraction_static": 0.8}, "H100:1")
    assert res.status == "does_not_fit", res.detail()
    assert check_fit(dict(LLAMA_70B, dtype="fp8"), {}, "H100:1", gpu_memory=141).status == "fits"
    fp8kv = check_fit(LLAMA_8B, {"context_length": 8192, "kv_cache_dtype": "fp8_e5m2"}, "H100:1")
    assert fp8kv.kv_cache_gib == 32 * 8 * 128 * 2 * 1 * 8192 / GIB


def test_more_parallelism_than_gpus_does_not_fit():
    res = check_fit(LLAMA_8B, {"tp_size": 4}, "L4:2")
    assert res.status == "does_not_fit"
    assert "4 GPUs per model copy" in res.lines[0]


def test_unknowns_are_not_errors():
    assert check_fit(LLAMA_8B, {}, None).status == "unknown"
    assert check_fit(LLAMA_8B, {}, "NoSuchGPU:1").status == "unknown"
    assert check_fit({"dtype": "bfloat16"}, {}, "H100:1").status == "unknown"


def test_architecture_from_local_config_json(tmp_path):
    model_dir = tmp_path / "weights"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 4, "hidden_size": 2048,
        "max_position_embeddings": 32768, "torch_dtype": "bfloat16"}))
    arch = load_architecture({"source": "weights"}, tmp_path)
    assert (arch.num_layers, arch.num_kv_heads, arch.head_dim, arch.max_context) == (28, 4, 128, 32768)
    res = check_fit({"source": "weights", "parameters": 3e9, "dtype": "auto"}, {}, "L4:1", project_dir=tmp_path)
    assert res.kv_cache_gib == 28 * 4 * 128 * 2 * 2 * 32768 / GIB
    assert any("config.json" in n for n in res.notes)


def _config(tmp_path, accelerators: str, args: str) -> str:
    (tmp_path / "main.yaml").write_text(f"""
model:
  big:
    source: hf://meta-llama/Llama-3.1-70B-Instruct
    parameters: 70.6e9
    dtype: bfloat16
    architecture: {{num_layers: 80, num_kv_heads: 8, head_dim: 128}}
fleet:
  chat:
    provider: local
    model: model.big
    replicas: 1
    accelerators: "{accelerators}"
    engine:
      type: sim
      args: {args}
""")
    return str(tmp_path)


def test_plan_fails_when_the_model_cannot_fit(tmp_path):
    path = _config(tmp_path, "H100:1", "{context_length: 8192}")
    r = CliRunner().invoke(cli, ["plan", path, "--refresh=false", "--json"])
    assert r.exit_code == 1
    assert "does not fit on H100:1 of fleet.chat" in r.output


def test_plan_warns_on_tight_fit_and_records_fit_in_json(tmp_path):
    path = _config(tmp_path, "H100:2", "{tp_size: 2, context_length: 8192, max_running_requests: 2, mem_fraction_static: 0.9}")
    r = CliRunner().invoke(cli, ["plan", path, "--refresh=false", "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    fleet = next(c for c in plan["changes"] if c["address"] == "fleet.chat")
    assert fleet["cost"]["fit"]["status"] == "tight"
    warn = [d for d in plan["diagnostics"] if "tight fit" in d["summary"]]
    assert warn and warn[0]["severity"] == "warning" and "kv cache" in warn[0]["detail"]

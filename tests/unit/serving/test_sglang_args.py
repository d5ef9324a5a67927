"""Engine args -> SGLang launch argv, and validation against the parser snapshot."""

from __future__ import annotations

import argparse
import sys

import pytest

from infraplan.errors import ProviderError
from infraplan.serving.sglang_args import (
    SENSITIVE_ARGS,
    build_launch_argv,
    load_snapshot,
    model_path_from_source,
    redact_args,
    redact_argv,
    validate_args,
)


def argv(args: dict, **kw) -> list[str]:
    base = dict(model_source="hf://Qwen/Qwen2.5-0.5B-Instruct", revision="abc123", served_name="qwen",
                host="127.0.0.1", port=30001)
    base.update(kw)
    return build_launch_argv(args=args, **base)


def opt(av: list[str], flag: str) -> list[str]:
    """The values following `flag` in argv, up to the next option."""
    i = av.index(flag)
    out = []
    for tok in av[i + 1 :]:
        if tok.startswith("--"):
            break
        out.append(tok)
    return out


@pytest.mark.parametrize(
    ("source", "expected"),
    [("hf://org/name", "org/name"), ("hf://org/name/", "org/name"), ("/models/llama", "/models/llama"),
     ("file:///models/x", "/models/x"), ("./rel/path", "./rel/path")],
)
def test_model_path_from_source(source, expected):
    assert model_path_from_source(source) == expected


def test_model_path_from_empty_hf_source_is_an_error():
    with pytest.raises(ProviderError):
        model_path_from_source("hf://")


def test_argv_fixed_part():
    av = argv({})
    assert av[:3] == [sys.executable, "-m", "sglang.launch_server"]
    assert opt(av, "--model-path") == ["Qwen/Qwen2.5-0.5B-Instruct"]
    assert opt(av, "--revision") == ["abc123"]
    assert opt(av, "--served-model-name") == ["qwen"]
    assert opt(av, "--host") == ["127.0.0.1"] and opt(av, "--port") == ["30001"]


def test_argv_maps_snake_case_values_lists_and_flags():
    av = argv({"tp_size": 2, "context_length": 8192, "mem_fraction_static": 0.85, "quantization": "fp8",
               "lora_paths": ["a=/l/a", "b=/l/b"], "enable_metrics": True, "skip_server_warmup": False,
               "api_key": "k", "chunked_prefill_size": None, "disaggregation_mode": "prefill"})
    assert opt(av, "--tp-size") == ["2"]
    assert opt(av, "--context-length") == ["8192"]
    assert opt(av, "--mem-fraction-static") == ["0.85"]
    assert opt(av, "--quantization") == ["fp8"]
    assert opt(av, "--lora-paths") == ["a=/l/a", "b=/l/b"]
    assert opt(av, "--enable-metrics") == []
    assert opt(av, "--api-key") == ["k"]
    assert opt(av, "--disaggregation-mode") == ["prefill"]
    assert "--skip-server-warmup" not in av
    assert "--chunked-prefill-size" not in av


def test_argv_long_alias_emits_the_short_flag():
    assert opt(argv({"tensor_parallel_size": 4}), "--tp-size") == ["4"]


def test_argv_local_path_without_revision_or_name():
    av = argv({}, model_source="/models/m", revision=None, served_name=None)
    assert opt(av, "--model-path") == ["/models/m"]
    assert "--revision" not in av and "--served-model-name" not in av


def test_argv_refuses_args_infraplan_sets():
    with pytest.raises(ProviderError, match="port"):
        argv({"port": 1234})


def test_validate_accepts_good_args():
    assert validate_args({"tp_size": 2, "mem_fraction_static": 1, "dtype": "bfloat16", "enable_metrics": True,
                          "lora_paths": ["x"], "api_key": "secret", "context_length": None,
                          "json_model_override_args": {"rope_scaling": None}}) == []


def test_validate_unknown_arg_suggests_a_close_name():
    (problem,) = validate_args({"tp_szie": 2})
    assert problem[0] == "tp_szie"
    assert "unknown" in problem[1] and "did you mean 'tp_size'?" in problem[1]


def test_validate_unknown_arg_far_from_anything_has_no_suggestion():
    (problem,) = validate_args({"zzzqqq": 1})
    assert "did you mean" not in problem[1]


def test_validate_real_arg_outside_typed_snapshot_is_accepted():
    # a real SGLang 0.5 option the snapshot lists by name only
    assert "enable_p2p_check" in load_snapshot()["all_names"]
    assert validate_args({"enable_p2p_check": True}) == []


def test_validate_bad_choice():
    (problem,) = validate_args({"kv_cache_dtype": "fp8_e4m4"})
    assert problem[0] == "kv_cache_dtype"
    assert "fp8_e4m4" in problem[1] and "did you mean 'fp8_e4m3'?" in problem[1]


@pytest.mark.parametrize(
    ("name", "value"),
    [("tp_size", "2"), ("tp_size", 2.5), ("tp_size", True), ("mem_fraction_static", "0.8"),
     ("enable_metrics", "yes"), ("lora_paths", "a"), ("dtype", 16)],
)
def test_validate_bad_types(name, value):
    problems = validate_args({name: value})
    assert len(problems) == 1 and problems[0][0] == name


def test_validate_reserved_args():
    names = [n for n, _ in validate_args({"model_path": "x", "port": 1, "tp_size": 1})]
    assert names == ["model_path", "port"]


def test_redaction():
    args = {"api_key": "sk-123", "tp_size": 2, "other": None}
    red = redact_args(args)
    assert red == {"api_key": "(sensitive)", "tp_size": 2, "other": None}
    assert args["api_key"] == "sk-123"  # the input is not modified
    assert "api_key" in SENSITIVE_ARGS
    av = argv({"api_key": "sk-123"})
    assert "sk-123" not in redact_argv(av) and opt(redact_argv(av), "--api-key") == ["(sensitive)"]


def test_snapshot_is_sourced_and_covers_the_mapped_args():
    snap = load_snapshot()
    assert snap["_source"]["version"].startswith("0.5.")
    assert snap["_source"]["file"].endswith("sglang/srt/server_args.py")
    for name in ("tp_size", "context_length", "mem_fraction_static", "dp_size", "pp_size", "ep_size", "quantization",
                 "dtype", "kv_cache_dtype", "max_running_requests", "lora_paths", "enable_metrics", "api_key",
                 "disaggregation_mode"):
        spec = snap["args"][name]
        assert spec["flag"] in spec["options"]
    assert 40 <= len(snap["args"]) <= 100


def test_snapshot_and_argv_match_sglangs_own_parser():
    server_args = pytest.importorskip("sglang.srt.server_args")
    parser = argparse.ArgumentParser()
    server_args.ServerArgs.add_cli_args(parser)
    by_option = {o: a for a in parser._actions for o in a.option_strings}
    for name, spec in load_snapshot()["args"].items():
        action = by_option.get(spec["flag"])
        assert action is not None, f"{spec['flag']} is not an option of this SGLang"
        if spec["type"] == "flag":
            assert action.nargs == 0, name
        elif spec.get("choices"):
            assert set(spec["choices"]) <= set(action.choices or spec["choices"]), name
    av = argv({"tp_size": 2, "context_length": 4096, "enable_metrics": True, "lora_paths": ["a=/x"],
               "kv_cache_dtype": "fp8_e5m2"})
    ns = parser.parse_args(av[3:])
    assert ns.model_path == "Qwen/Qwen2.5-0.5B-Instruct" and ns.port == 30001
    assert ns.tensor_parallel_size == 2 and ns.context_length == 4096 and ns.enable_metrics is True

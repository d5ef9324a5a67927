"""Engine args -> SGLang launch argv, and validation against each supported release's parser snapshot."""

from __future__ import annotations

import argparse
import sys

import pytest

from infraplan.errors import ProviderError
from infraplan.util.redact import is_sensitive_name, redact, redact_argv
from infraplan.serving.sglang_args import (
    DEFAULT_VERSION,
    ArgKind,
    SNAPSHOT_DIR,
    SUPPORTED_VERSIONS,
    build_launch_argv,
    deprecated_args,
    load_snapshot,
    model_path_from_source,
    unsupported_version,
    validate_args,
)

OLD, NEW = "0.5.5", "0.5.23"


def argv(args: dict, **kw) -> list[str]:
    base = dict(model_source="hf://Qwen/Qwen2.5-0.5B-Instruct", revision="abc123", served_name="qwen",
                host="127.0.0.1", port=30001, secrets_file="/run/secrets.yaml")
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
    assert "--api-key" not in av and "k" not in av  # secrets go in the --config file, never on argv
    assert opt(av, "--config") == ["/run/secrets.yaml"]
    assert opt(av, "--disaggregation-mode") == ["prefill"]
    assert "--skip-server-warmup" not in av
    assert "--chunked-prefill-size" not in av


def test_secret_args_need_a_file_and_stay_off_the_command_line():
    from infraplan.serving.sglang_args import secret_args

    args = {"api_key": "k1", "admin_api_key": "k2", "ssl_keyfile_password": "pw", "ssl_keyfile": "/k.pem",
            "tp_size": 2}
    assert secret_args(args) == {"api_key": "k1", "admin_api_key": "k2", "ssl_keyfile_password": "pw"}
    with pytest.raises(ValueError):
        build_launch_argv(model_source="hf://o/m", revision=None, served_name=None, host="h", port=1, args=args)
    av = build_launch_argv(model_source="hf://o/m", revision=None, served_name=None, host="h", port=1, args=args,
                           secrets_file="/s.yaml")
    assert not {"k1", "k2", "pw"} & set(av) and opt(av, "--ssl-keyfile") == ["/k.pem"]
    assert opt(av, "--config") == ["/s.yaml"]


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


def test_every_option_of_the_parser_is_typed():
    # each snapshot is the whole parser: every option string belongs to a typed entry
    for version in SUPPORTED_VERSIONS:
        for name, spec in load_snapshot(version)["args"].items():
            assert ArgKind(spec["type"].removeprefix("list[").removesuffix("]")), (version, name)
            assert spec["flag"] in spec["options"], (version, name)
    assert validate_args({"enable_p2p_check": True}, OLD) == []
    assert validate_args({"enable_p2p_check": True}, NEW) == []


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
    """Engine args and their argv are masked by the one redaction (infraplan.util.redact)."""
    args = {"api_key": "sk-123", "tp_size": 2, "other": None}
    red = redact(args, marker="(sensitive)")
    assert red == {"api_key": "(sensitive)", "tp_size": 2, "other": None}
    assert args["api_key"] == "sk-123"  # the input is not modified
    assert all(is_sensitive_name(n) for n in ("api_key", "admin_api_key", "ssl_keyfile_password"))
    av = ["python", "-m", "sglang.launch_server", "--api-key", "sk-123", "--tp-size", "2"]  # a hand-written one
    assert "sk-123" not in redact_argv(av, "(sensitive)") and opt(redact_argv(av, "(sensitive)"), "--api-key") == \
        ["(sensitive)"]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_snapshot_is_sourced_and_covers_the_mapped_args(version):
    snap = load_snapshot(version)
    src = snap["_source"]
    assert src["version"] == version and src["file"] == "sglang/srt/server_args.py"
    assert len(src["sha256"]) == 64 and src["generator"] == "scripts/snapshot_sglang_args.py"
    for name in ("tp_size", "context_length", "mem_fraction_static", "dp_size", "pp_size", "ep_size", "quantization",
                 "dtype", "kv_cache_dtype", "max_running_requests", "lora_paths", "enable_metrics", "api_key",
                 "disaggregation_mode"):
        spec = snap["args"][name]
        assert spec["flag"] in spec["options"]
    assert 250 <= len(snap["args"]) <= 700  # the whole parser, not a hand-picked subset


def test_supported_versions_are_the_committed_snapshots_newest_is_the_default():
    assert SUPPORTED_VERSIONS == ("0.5.5", "0.5.6.post2", "0.5.23")  # oldest first, 0.5.23 > 0.5.6.post2
    assert {p.stem for p in SNAPSHOT_DIR.glob("*.json")} == set(SUPPORTED_VERSIONS)
    assert DEFAULT_VERSION == "0.5.23"
    assert validate_args({"attn_dp_size": 2}) == []  # the default is 0.5.23's parser


def test_unsupported_version_names_the_supported_ones():
    msg = unsupported_version("0.4.0")
    assert msg and "0.4.0" in msg and "0.5.5, 0.5.6.post2, 0.5.23" in msg
    assert unsupported_version("0.5.23") is None
    with pytest.raises(ProviderError, match="supported versions: 0.5.5"):
        load_snapshot("0.4.0")
    with pytest.raises(ProviderError, match="not supported"):
        validate_args({"tp_size": 1}, "0.5.99")


def test_0_5_23_refuses_cuda_graph_max_bs_with_the_split_names():
    # 0.5.23 split it into -decode/-prefill: its own parser calls --cuda-graph-max-bs ambiguous
    (problem,) = validate_args({"cuda_graph_max_bs": 256}, NEW)
    assert problem[0] == "cuda_graph_max_bs"
    assert "unknown SGLang 0.5.23 server arg 'cuda_graph_max_bs'" in problem[1]
    assert "'cuda_graph_max_bs_decode' or 'cuda_graph_max_bs_prefill'" in problem[1]
    assert "0.5.5" in problem[1]  # the releases that still have it
    assert validate_args({"cuda_graph_max_bs": 256}, OLD) == []
    assert validate_args({"cuda_graph_max_bs_decode": 256}, NEW) == []
    with pytest.raises(ProviderError, match="cuda_graph_max_bs_decode"):
        argv({"cuda_graph_max_bs": 256}, version=NEW)
    assert opt(argv({"cuda_graph_max_bs": 256}, version=OLD), "--cuda-graph-max-bs") == ["256"]
    assert opt(argv({"cuda_graph_max_bs_decode": 256}, version=NEW), "--cuda-graph-max-bs-decode") == ["256"]


def test_new_options_of_0_5_23_are_accepted_there_only():
    assert validate_args({"attn_dp_size": 2, "admin_api_key": "k", "tokenizer_backend": "huggingface"}, NEW) == []
    problems = dict(validate_args({"attn_dp_size": 2}, OLD))
    assert "unknown SGLang 0.5.5 server arg 'attn_dp_size'" in problems["attn_dp_size"]
    assert "SGLang 0.5.23 has it" in problems["attn_dp_size"]
    assert opt(argv({"attn_dp_size": 2}, version=NEW), "--attn-dp-size") == ["2"]


@pytest.mark.parametrize(("name", "value"), [("quantization", "marlin"), ("quantization", "qoq"),
                                             ("kv_cache_dtype", "fp4_e2m1"), ("attention_backend", "cutlass_mla"),
                                             ("attention_backend", "dual_chunk_flash_attn")])
def test_choices_are_checked_per_version(name, value):
    assert validate_args({name: value}, OLD) == []
    assert validate_args({name: value}, "0.5.6.post2") == []
    (problem,) = validate_args({name: value}, NEW)
    assert problem[0] == name and f"not one of SGLang 0.5.23's choices for --{name.replace('_', '-')}" in problem[1]


def test_the_tp_size_option_differs_between_releases_and_both_emit_tp_size():
    old, new = load_snapshot(OLD)["args"]["tp_size"], load_snapshot(NEW)["args"]["tp_size"]
    assert (old["dest"], new["dest"]) == ("tensor_parallel_size", "tp_size")  # as each parser has it
    for version in (OLD, NEW):
        assert opt(argv({"tp_size": 4}, version=version), "--tp-size") == ["4"]
        assert opt(argv({"tensor_parallel_size": 4}, version=version), "--tp-size") == ["4"]


def test_abbreviations_argparse_would_take_are_refused():
    # argparse resolves an unambiguous prefix (--mem-fraction -> --mem-fraction-static); infraplan does not
    for version in (OLD, NEW):
        (problem,) = validate_args({"mem_fraction": 0.8}, version)
        assert "unknown" in problem[1] and "mem_fraction_static" in problem[1]
        with pytest.raises(ProviderError):
            argv({"mem_fraction": 0.8}, version=version)


def test_size_values_where_sglang_takes_them():
    # 0.5.23 reads context_length with human_readable_int ("128k"); 0.5.5 wants an int
    assert load_snapshot(NEW)["args"]["context_length"]["converter"] == "human_readable_int"
    assert validate_args({"context_length": "128k", "max_total_tokens": 4096}, NEW) == []
    (problem,) = validate_args({"context_length": "lots"}, NEW)
    assert "size" in problem[1]
    (problem,) = validate_args({"context_length": "128k"}, OLD)
    assert "expects an int" in problem[1]


def test_json_options_take_a_map_and_emit_json_text():
    config = {"decode": {"backend": "full", "max_bs": 128}}
    assert validate_args({"cuda_graph_config": config}, NEW) == []
    assert opt(argv({"cuda_graph_config": config}, version=NEW), "--cuda-graph-config") == [
        '{"decode": {"backend": "full", "max_bs": 128}}']
    (problem,) = validate_args({"cuda_graph_config": "{not json"}, NEW)
    assert "JSON" in problem[1]


def test_store_true_and_negatable_flags():
    spec = load_snapshot(NEW)["args"]["lora_strict_loading"]
    assert spec["negation"] == "--no-lora-strict-loading"
    assert "--lora-strict-loading" in argv({"lora_strict_loading": True}, version=NEW)
    assert "--no-lora-strict-loading" in argv({"lora_strict_loading": False}, version=NEW)
    av = argv({"enable_metrics": False}, version=NEW)
    assert "--enable-metrics" not in av and "--no-enable-metrics" not in av
    (problem,) = validate_args({"no_lora_strict_loading": True}, NEW)  # the negation is not a name of its own
    assert "unknown" in problem[1]


def test_deprecated_args_are_named_with_sglangs_note():
    ((name, note),) = deprecated_args({"enable_dp_attention": True, "tp_size": 2}, NEW)
    assert name == "enable_dp_attention" and "deprecated in SGLang 0.5.23" in note and "--attn-dp-size" in note
    assert deprecated_args({"enable_dp_attention": True}, OLD) == []


def test_version_sets_of_names_differ_as_the_real_parsers_do():
    names = lambda v: {o[2:].replace("-", "_") for s in load_snapshot(v)["args"].values()  # noqa: E731
                       for o in s["options"] if o.startswith("--")}
    gone, added = names(OLD) - names(NEW), names(NEW) - names(OLD)
    assert {"cuda_graph_max_bs", "cuda_graph_bs", "enable_double_sparsity"} <= gone
    assert {"attn_dp_size", "cuda_graph_max_bs_decode", "cuda_graph_max_bs_prefill"} <= added
    assert len(added) > 250 and len(gone) > 20


def test_snapshot_and_argv_match_sglangs_own_parser():
    server_args = pytest.importorskip("sglang.srt.server_args")
    from importlib.metadata import version as dist_version

    installed = dist_version("sglang")
    if installed not in SUPPORTED_VERSIONS:
        pytest.skip(f"SGLang {installed} has no snapshot")
    parser = argparse.ArgumentParser()
    server_args.ServerArgs.add_cli_args(parser)
    by_option = {o: a for a in parser._actions for o in a.option_strings}
    for name, spec in load_snapshot(installed)["args"].items():
        action = by_option.get(spec["flag"])
        assert action is not None, f"{spec['flag']} is not an option of this SGLang"
        if spec["type"] == "flag":
            assert action.nargs == 0, name
        elif spec.get("choices"):
            assert set(spec["choices"]) <= set(action.choices or spec["choices"]), name
    av = argv({"tp_size": 2, "context_length": 4096, "enable_metrics": True, "lora_paths": ["a=/x"],
               "kv_cache_dtype": "fp8_e5m2"}, version=installed)
    ns = parser.parse_args(av[3:])
    assert ns.model_path == "Qwen/Qwen2.5-0.5B-Instruct" and ns.port == 30001
    assert vars(ns)[load_snapshot(installed)["args"]["tp_size"]["dest"]] == 2 and ns.context_length == 4096 and ns.enable_metrics is True

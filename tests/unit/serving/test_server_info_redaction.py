"""SGLang 0.5.23's /server_info carries every key in clear (api_key, admin_api_key, launch_command):
the client masks key-, token- and secret-named fields at any depth and the secrets of command lines."""

from __future__ import annotations

import json

from helpers.paths import FIXTURES

from infraplan.serving.sglang_client import redact_server_info
from infraplan.util.redact import is_sensitive_name, redact, redact_argv, redact_command_line

API_KEY, ADMIN_KEY = "sk-fixture-not-a-real-key", "sk-admin-fixture-not-a-real-key"


def test_the_recorded_server_info_keeps_no_secret():
    raw = json.loads((FIXTURES / "sglang" / "server_info.json").read_text())
    assert raw["admin_api_key"] == ADMIN_KEY and f"--admin-api-key {ADMIN_KEY}" in raw["launch_command"]  # as SGLang
    info = redact_server_info(raw)
    text = json.dumps(info)
    assert API_KEY not in text and ADMIN_KEY not in text
    assert info["api_key"] == info["admin_api_key"] == "(sensitive)"
    assert info["internal_states"][0]["admin_api_key"] == "(sensitive)"
    assert "--api-key (sensitive) --admin-api-key (sensitive)" in info["launch_command"]
    assert info["launch_command"].startswith("--model-path Qwen/Qwen2.5-0.5B-Instruct --revision 7ae5576")
    # what is not secret stays
    assert info["max_total_num_tokens"] == raw["max_total_num_tokens"] and info["revision"] == raw["revision"]
    assert info["bucket_time_to_first_token"] == raw["bucket_time_to_first_token"]  # token-named, not a string
    assert info["watermark_key"] is None  # nothing to mask


def test_every_key_token_or_secret_named_field_is_masked():
    info = {"api_key": "a", "admin_api_key": "b", "hf_token": "c", "watermark_key_b": "d", "ssl_keyfile_password": "e",
            "client_secret": "f", "nested": [{"auth_token": "g"}], "tokenizer_path": "org/m", "ssl_keyfile": "/k.pem",
            "max_total_num_tokens": 10, "token_usage": 0.5, "speculative_token_map": "/map.json"}
    out = redact_server_info(info)
    assert all(out[k] == "(sensitive)" for k in ("api_key", "admin_api_key", "hf_token", "watermark_key_b",
                                                   "ssl_keyfile_password", "client_secret"))
    assert out["nested"] == [{"auth_token": "(sensitive)"}]
    assert {k: out[k] for k in ("tokenizer_path", "ssl_keyfile", "max_total_num_tokens", "token_usage",
                                "speculative_token_map")} == {k: info[k] for k in ("tokenizer_path", "ssl_keyfile",
                                                                                   "max_total_num_tokens", "token_usage",
                                                                                   "speculative_token_map")}
    assert not is_sensitive_name("max_total_num_tokens") and is_sensitive_name("--admin-api-key")


def test_command_lines_lose_their_secrets_in_every_spelling():
    line = "--model-path m --api-key k1 --admin-api-key=k2 --hf-token 'k 3' --enable-metrics --port 30000"
    assert redact_command_line(line, "X") == (
        "--model-path m --api-key X --admin-api-key=X --hf-token X --enable-metrics --port 30000")
    assert redact_argv(["--api-key", "k1", "--admin-api-key=k2", "--enable-metrics", "--port", "1"], "X") == \
        ["--api-key", "X", "--admin-api-key=X", "--enable-metrics", "--port", "1"]
    assert redact_command_line("--api-key --enable-metrics") == "--api-key --enable-metrics"  # no value to mask
    # the plan/state redaction covers them too
    assert redact({"launch": "python -m sglang.launch_server --api-key k1", "argv": ["--admin-api-key", "k2"]}) == \
        {"launch": "python -m sglang.launch_server --api-key (sensitive value)",
         "argv": ["--admin-api-key", "(sensitive value)"]}


def test_a_bare_key_field_is_an_identifier_not_a_secret():
    """Plan cost lines name what they price in `key` (router.front); masking it hid the router's price."""
    from infraplan.util.redact import redact

    line = {"key": "router.front", "hourly": 0.192, "admin_key": "k-1", "worker_api_keys": ["k-2"]}
    assert redact(line) == {"key": "router.front", "hourly": 0.192, "admin_key": "(sensitive value)",
                            "worker_api_keys": "(sensitive value)"}

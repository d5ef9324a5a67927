"""Planted secrets never appear in the clear (issue #18, items 1-4).

Secrets come in three ways: sensitive variables (from the environment, so infraplan's own
command line holds none), a key written into the config, and an env value built from a
secret. Every command runs for real (servers and a router on 127.0.0.1); then every
artefact is searched: stdout, stderr, the state and its WAL, the backup, saved plans, logs,
history, audit, and the command lines of every process of this user.
"""

from __future__ import annotations

import os
import stat
import sqlite3
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # about 25 s: some thirty real commands

API_KEY, API_KEY_2 = "TOPSECRET-api-7f3a91", "TOPSECRET-api-rotated-c2d0"
HF_TOKEN = "TOPSECRET-hf-0b66e2"
ADMIN_KEY = "TOPSECRET-admin-written-in-file-93ac"
ALL = (API_KEY, API_KEY_2, HF_TOKEN, ADMIN_KEY)

CONFIG = f"""\
variable:
  api_key: {{type: string, sensitive: true}}
  hf_token: {{type: string, sensitive: true}}
model:
  m: {{source: hf://org/tiny, revision: "abc1234", served_name: tiny}}
fleet:
  chat:
    provider: local
    model: model.m
    replicas: 1
    engine:
      type: sim
      sim: {{ttft_ms: 1, tpot_ms: 1}}
      args:
        api_key: "${{var.api_key}}"
        admin_api_key: "{ADMIN_KEY}"
      env:
        HF_TOKEN: "${{var.hf_token}}"
        UPSTREAM_AUTHORIZATION: "Bearer ${{var.api_key}}"
router:
  gw: {{fleets: [fleet.chat], policy: round_robin}}
output:
  endpoint: {{value: "${{router.gw.endpoint}}"}}
  auth:
    value: "Bearer ${{var.api_key}}"
    sensitive: true
"""


def _cmdlines() -> str:
    me = os.getuid()
    out = []
    for p in psutil.process_iter(["cmdline", "uids"]):
        try:
            if p.info["uids"] and p.info["uids"].real == me:
                out.append(" ".join(p.info["cmdline"] or []))
        except psutil.Error:
            continue
    return "\n".join(out)


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != "main.yaml"}


def test_no_secret_in_any_artefact(project, leftover_servers, leftover_routers):
    p = project
    p.write("main.yaml", CONFIG)
    os.environ["INFRAPLAN_VAR_api_key"] = API_KEY
    os.environ["INFRAPLAN_VAR_hf_token"] = HF_TOKEN
    seen: list[str] = []
    try:
        def run(*args: str, check: bool = True):
            proc = p.run(*args, check=check)
            seen.extend([f"$ infraplan {' '.join(args)}", proc.stdout, proc.stderr])
            return proc

        run("validate")
        run("plan", "--out", "first.plan")
        run("plan", "--json")
        run("apply", "--auto-approve", "--json")
        cmdlines = _cmdlines()  # while the servers and the router run
        endpoint = run("output", "--raw", "endpoint").stdout.strip()
        r = httpx.post(f"{endpoint}/v1/chat/completions", timeout=10, json={
            "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert r.status_code == 200, r.text  # the router reached the keyed server with its key
        assert run("plan", "--detailed-exitcode").returncode == 0  # sealed secrets compare equal
        for args in (("show",), ("show", "--json"), ("show", "--json", "first.plan"), ("output",),
                     ("output", "--json"), ("output", "auth"), ("state", "list"), ("state", "show", "fleet.chat[0]"),
                     ("state", "show", "router.gw"), ("history",), ("history", "--json"), ("drift", "--json")):
            run(*args, check=False)
        run("drift", "--plan-out", "drift.plan", check=False)
        # --raw by name is the one way to see a sensitive output: worked out again from the config
        assert run("output", "auth", "--raw").stdout.strip() == f"Bearer {API_KEY}"
        seen.pop(-2)

        # a rotated key: the replacement is planned, both values masked
        os.environ["INFRAPLAN_VAR_api_key"] = API_KEY_2
        rotated = run("plan", "--out", "rotated.plan", "--detailed-exitcode", check=False)
        assert rotated.returncode == 2
        assert "args.api_key: (sensitive value) -> (sensitive value) forces replacement" in rotated.stdout
        run("show", "--json", "rotated.plan")
        run("show", "--json", "--format", "terraform", "rotated.plan")
        run("plan", "--json", check=False)
        run("apply", "rotated.plan")
        cmdlines += "\n" + _cmdlines()
        run("destroy", "--auto-approve")
    finally:
        os.environ.pop("INFRAPLAN_VAR_api_key", None)
        os.environ.pop("INFRAPLAN_VAR_hf_token", None)

    text = "\n".join(seen)
    conn = sqlite3.connect(p.state)
    try:
        rows = "\n".join(str(r) for t in ("resources", "outputs", "history", "audit", "meta")
                         for r in conn.execute(f"SELECT * FROM {t}"))
    finally:
        conn.close()
    files = _files(p.path)
    for secret in ALL:
        assert secret not in text, f"{secret} printed"
        assert secret not in cmdlines, f"{secret} on a command line"
        assert secret not in rows, f"{secret} in a state row"
        for path, data in files.items():
            assert secret.encode() not in data, f"{secret} in {path.relative_to(p.path)}"
    assert "sensitive:hmac-sha256:" not in text  # sealed references are masked in every view too
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(p.path)} is {oct(mode)}"
    for d in [d for d in p.path.rglob("*") if d.is_dir()]:
        assert stat.S_IMODE(d.stat().st_mode) & 0o077 == 0, f"{d.relative_to(p.path)}/ is not private"

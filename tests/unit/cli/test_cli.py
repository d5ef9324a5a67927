"""The `infraplan` command line, run in-process with click's CliRunner.

No test here starts a server: configs use `replicas: 0` or `--refresh=false`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from helpers.cli import SMALL_CONFIG, children, fingerprint, run
from infraplan import __version__
from infraplan.state import StateStore
from helpers.paths import REPO
from helpers.timing import within

COLOUR_SGR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")


def store(db: Path) -> StateStore:
    return StateStore.open_readonly(db)


def one_error_line(output: str) -> str:
    """The output must be exactly one line, an `Error: ...` message; returns it."""
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: "), output
    return lines[0]


@pytest.fixture
def empty_project(tmp_path, monkeypatch):
    """tmp_path/config with SMALL_CONFIG and no state file; cwd is tmp_path."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "main.yaml").write_text(SMALL_CONFIG)
    monkeypatch.chdir(tmp_path)
    return cfg


@pytest.fixture(autouse=True)
def no_processes_started():
    before = children()
    yield
    assert children() <= before, "a CLI test started a process"


# -- basics ------------------------------------------------------------------------
def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"infraplan, version {__version__}"


def test_validate_success(empty_project):
    result = run("validate", "config")
    assert result.exit_code == 0, result.output
    assert "Success! The configuration is valid (2 resource blocks)." in result.output
    assert not (empty_project / "infraplan.db").exists(), "validate must not create state"


def test_validate_json_success(empty_project):
    result = run("validate", "config", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["valid"] is True
    assert [d for d in doc["diagnostics"] if d["severity"] == "error"] == []


def test_validate_json_failure(empty_project):
    (empty_project / "main.yaml").write_text(SMALL_CONFIG.replace("replicas: ${var.replicas}",
                                                                  "replicas: ${var.replicaz}"))
    result = run("validate", "config", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    (diag,) = doc["diagnostics"]
    line = SMALL_CONFIG.splitlines().index("    replicas: ${var.replicas}") + 1
    assert diag["location"] == {"file": "config/main.yaml", "line": line, "col": 15}
    assert diag["path"] == "fleet.chat.replicas"
    assert "did you mean 'replicas'" in diag["summary"]


def test_missing_config_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("plan", "nowhere")
    assert result.exit_code == 1
    assert "nowhere" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_providers_lists_local():
    result = run("providers")
    assert result.exit_code == 0
    assert re.search(r"^local: available$", result.output, re.M), result.output


# -- plan ----------------------------------------------------------------------------
def test_plan_detailed_exitcode_with_changes(empty_project):
    result = run("plan", "config", "--refresh=false", "--detailed-exitcode")
    assert result.exit_code == 2, result.output
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in result.output
    assert not (empty_project / "infraplan.db").exists(), "plan must not create state"


def test_plan_detailed_exitcode_no_changes(project):
    before = fingerprint(project / "infraplan.db")
    result = run("plan", "config", "--refresh=false", "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    assert "No changes" in result.output
    # refresh with no replicas asks no process anything and still finds nothing to do
    assert run("plan", "config", "--detailed-exitcode").exit_code == 0
    assert fingerprint(project / "infraplan.db") == before


def test_plan_detailed_exitcode_change_on_seeded_state(project):
    result = run("plan", "config", "--refresh=false", "--detailed-exitcode", "--var", "replicas=1")
    assert result.exit_code == 2, result.output
    assert "fleet.chat[0] will be created" in result.output


def test_plan_json(project):
    result = run("plan", "config", "--refresh=false", "--json", "--var", "replicas=1")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["format_version"] == "1.0"
    documented = {"format_version", "infraplan_version", "created_at", "state", "config", "refreshed",
                  "summary", "changes", "outputs", "diagnostics"}
    assert documented <= set(doc)
    snap = store(project / "infraplan.db").snapshot()
    assert doc["state"] == {"lineage": snap.lineage, "serial": snap.serial}
    assert doc["refreshed"] is False
    assert {"add", "change", "destroy", "replace", "noop"} <= set(doc["summary"])
    by_addr = {c["address"]: c for c in doc["changes"]}
    assert by_addr["fleet.chat[0]"]["action"] == "create"
    assert by_addr["model.llama"]["action"] == "noop"
    assert doc["summary"]["add"] == sum(c["action"] in ("create", "replace") for c in doc["changes"])
    change_keys = {"address", "kind", "provider", "action", "reasons", "before", "after", "after_unknown",
                   "attributes", "requires_replace", "create_before_destroy", "dependencies", "deposed",
                   "risks", "warnings"}
    for c in doc["changes"]:
        assert change_keys <= set(c), c["address"]
    assert doc["outputs"]["endpoints"]["unknown"] is True


# -- saved plans ---------------------------------------------------------------------
def test_saved_plan_applies(empty_project, tmp_path):
    assert run("plan", "config", "--refresh=false", "--out", "plan.json").exit_code == 0
    result = run("apply", "plan.json")
    assert result.exit_code == 0, result.output
    assert "Apply complete!" in result.output
    assert sorted(r.address for r in store(empty_project / "infraplan.db").resources()) == [
        "fleet.chat", "model.llama"]


def test_saved_plan_refused_after_state_changed(project):
    db = project / "infraplan.db"
    assert run("plan", "config", "--refresh=false", "--var", "replicas=1", "--out", "plan.json").exit_code == 0
    saved_serial = json.loads(Path("plan.json").read_text())["state"]["serial"]
    with StateStore(db) as s:
        s.put("model.other", kind="model", attributes={"source": "hf://x/y"})
    before = fingerprint(db)
    assert before["serial"] == saved_serial + 1

    result = run("apply", "plan.json")
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert "stale" in line and f"serial {saved_serial}" in line and f"serial {saved_serial + 1}" in line
    assert fingerprint(db) == before


def test_saved_plan_refused_after_config_changed(project):
    db = project / "infraplan.db"
    assert run("plan", "config", "--refresh=false", "--var", "replicas=1", "--out", "plan.json").exit_code == 0
    (project / "main.yaml").write_text(SMALL_CONFIG.replace("team: ml-platform", "team: research"))
    before = fingerprint(db)

    result = run("apply", "plan.json")
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert "stale" in line and "configuration" in line
    assert fingerprint(db) == before


def test_saved_plan_keeps_var_values(empty_project):
    """The --var given to `plan --out` is part of the saved plan: applying it needs no --var."""
    (empty_project / "main.yaml").write_text(
        SMALL_CONFIG.replace("variable:\n", "variable:\n  team:\n    type: string\n")
        .replace("team: ml-platform", "team: ${var.team}"))
    assert run("plan", "config", "--refresh=false", "--var", "team=research", "--out", "plan.json").exit_code == 0
    result = run("apply", "plan.json")
    assert result.exit_code == 0, result.output
    assert store(empty_project / "infraplan.db").get("fleet.chat").attributes["labels"] == {"team": "research"}


SENSITIVE_CONFIG = SMALL_CONFIG.replace(
    "variable:\n", "variable:\n  hf_token:\n    type: string\n    sensitive: true\n").replace(
    "      type: sim\n", "      type: sim\n      env:\n        HF_TOKEN: ${var.hf_token}\n")


def test_saved_plan_does_not_store_sensitive_vars(empty_project):
    (empty_project / "main.yaml").write_text(SENSITIVE_CONFIG)
    result = run("plan", "config", "--refresh=false", "--var", "hf_token=hf_TopSecret9", "--out", "plan.json")
    assert result.exit_code == 0, result.output
    assert "hf_TopSecret9" not in result.output
    assert "hf_TopSecret9" not in Path("plan.json").read_text()


def test_show_terraform_format_of_a_saved_plan(project):
    """`show --json --format terraform PLANFILE` is the saved plan shaped like `terraform show -json`."""
    (project / "main.yaml").write_text(SENSITIVE_CONFIG)
    made = run("plan", "config", "--refresh=false", "--var", "replicas=1", "--var", "hf_token=hf_TopSecret9",
               "--out", "plan.json")
    assert made.exit_code == 0, made.output
    result = run("show", "--json", "--format", "terraform", "plan.json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["format_version"] == "1.2" and doc["errored"] is False
    by = {rc["address"]: rc for rc in doc["resource_changes"]}
    assert {a: rc["change"]["actions"] for a, rc in by.items()} == {
        "fleet.chat": ["update"], "fleet.chat[0]": ["create"], "model.llama": ["no-op"]}
    assert by["fleet.chat[0]"]["change"]["after_sensitive"]["env"] == {"HF_TOKEN": True}
    assert "hf_TopSecret9" not in result.output
    assert json.loads(run("show", "--json", "plan.json").stdout)["format_version"] == "1.0"  # native by default
    for args in (("show", "--format", "terraform", "plan.json"), ("show", "--json", "--format", "terraform")):
        refused = run(*args)
        assert refused.exit_code == 1 and "--format terraform" in refused.stderr, args


def test_apply_refuses_a_non_plan_json_file(project):
    Path("junk.json").write_text('{"a": 1}')
    result = run("apply", "junk.json")
    assert result.exit_code == 1
    assert "not an infraplan plan file" in one_error_line(result.output)
    Path("old.json").write_text('{"format_version": "0.9", "changes": []}')
    result = run("apply", "old.json")
    assert result.exit_code == 1
    assert "'0.9' is not supported" in one_error_line(result.output)


def test_apply_of_a_corrupt_plan_file_is_a_clean_error(project):
    Path("plan.json").write_text('{"format_version": "1.0", "changes": [')
    result = run("apply", "plan.json")
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert "plan.json" in one_error_line(result.output)


@pytest.mark.parametrize("flag", ["--target", "--replace"])
def test_plan_with_unknown_address_says_so(project, flag):
    result = run("plan", "config", "--refresh=false", flag, "fleet.nope")
    assert "fleet.nope" in result.output


# -- apply approval and locking ------------------------------------------------------
def test_apply_without_tty_or_auto_approve_refuses(project):
    db = project / "infraplan.db"
    before = fingerprint(db)
    result = run("apply", "config", "--refresh=false", "--var", "replicas=1", input="yes\n")
    assert result.exit_code == 1
    assert "Error: refusing to apply without approval" in result.output
    assert "--auto-approve" in result.output
    assert fingerprint(db) == before


def test_destroy_without_tty_or_auto_approve_refuses(project):
    db = project / "infraplan.db"
    before = fingerprint(db)
    result = run("destroy", "config", "--refresh=false", input="yes\n")
    assert result.exit_code == 1
    assert "Error: refusing to destroy without approval" in result.output
    assert fingerprint(db) == before


def test_apply_while_locked_fails_at_once_naming_holder(project):
    db = project / "infraplan.db"
    holder = StateStore(db)
    try:
        with holder.lock("apply", who="alice@build-7") as info:
            before = fingerprint(db)
            t0 = time.monotonic()
            result = run("apply", "config", "--auto-approve", "--refresh=false", "--var", "replicas=1")
            elapsed = time.monotonic() - t0
            assert result.exit_code == 1
            assert elapsed < within(3), "apply waited for the lock instead of failing at once"
            assert "Traceback" not in result.output
            err = [ln for ln in result.output.splitlines() if ln.startswith("Error: ")]
            assert len(err) == 1, result.output
            assert "state is locked by alice@build-7" in err[0]
            assert info.id in err[0] and "for apply" in err[0]
            assert fingerprint(db) == before
            assert holder.current_lock() == info, "the holder's lock must survive"
    finally:
        holder.close()


def test_force_unlock_wrong_id_then_right_id(project):
    db = project / "infraplan.db"
    holder = StateStore(db)
    try:
        with holder.lock("apply", who="alice@build-7") as info:
            wrong = run("force-unlock", "0" * 32, "--state", str(db))
            assert wrong.exit_code == 1
            line = one_error_line(wrong.output)
            assert "does not match" in line and info.id in line and "alice@build-7" in line
            assert holder.current_lock() == info

            # its holder (this process) still runs: no terminal to ask, so it needs --force
            alive = run("force-unlock", info.id, "--state", str(db))
            assert alive.exit_code == 1
            line = one_error_line(alive.output)
            assert "still running" in line and "--force" in line and "alice@build-7" in line
            assert holder.current_lock() == info

            right = run("force-unlock", info.id, "--force", "--state", str(db))
            assert right.exit_code == 0, right.output
            assert info.id in right.output
            assert holder.current_lock() is None
        audit = store(db).audit_log()
        assert audit[0].event == "force-unlock"
        assert audit[0].details["id"] == info.id and audit[0].details["who"] == "alice@build-7"
    finally:
        holder.close()


def test_force_unlock_when_not_locked(project):
    result = run("force-unlock", "abc", "--state", str(project / "infraplan.db"))
    assert result.exit_code == 1
    assert "not locked" in one_error_line(result.output)


# -- graph and schema ----------------------------------------------------------------
def test_graph_dot(empty_project):
    result = run("graph", "config", "--var", "replicas=2")
    assert result.exit_code == 0, result.output
    dot = result.output
    assert dot.startswith("digraph infraplan {") and dot.rstrip().endswith("}")
    edges = set(re.findall(r'^\s*"([^"]+)" -> "([^"]+)";$', dot, re.M))
    assert edges == {
        ("fleet.chat", "model.llama"),
        ("fleet.chat[0]", "model.llama"),
        ("fleet.chat[1]", "model.llama"),
        ("fleet.chat", "fleet.chat[0]"),
        ("fleet.chat", "fleet.chat[1]"),
    }
    assert not (empty_project / "infraplan.db").exists()


def test_schema_command_matches_committed_file(tmp_path):
    committed = (REPO / "schemas" / "infraplan.schema.json").read_text()
    result = run("schema")
    assert result.exit_code == 0
    assert result.output == committed
    out = tmp_path / "schema.json"
    assert run("schema", "--out", str(out)).exit_code == 0
    assert out.read_text() == committed


# -- state, history, output ----------------------------------------------------------
def test_state_list_and_show(project):
    db = str(project / "infraplan.db")
    listed = run("state", "list", "--state", db)
    assert listed.exit_code == 0
    assert listed.output.splitlines() == ["fleet.chat", "model.llama"]
    shown = run("state", "show", "model.llama", "--state", db)
    assert shown.exit_code == 0
    doc = json.loads(shown.output)
    assert doc["address"] == "model.llama" and doc["kind"] == "model"
    assert doc["attributes"]["revision"] == "0e9e39f"
    missing = run("state", "show", "model.nope", "--state", db)
    assert missing.exit_code == 1
    assert "model.nope" in one_error_line(missing.output)


def test_state_mv_and_rm_are_audited(project):
    db = project / "infraplan.db"
    serial = fingerprint(db)["serial"]
    mv = run("state", "mv", "fleet.chat", "fleet.web", "--state", str(db))
    assert mv.exit_code == 0, mv.output
    s = store(db)
    assert sorted(r.address for r in s.resources()) == ["fleet.web", "model.llama"]
    audit = s.audit_log()
    assert (audit[0].event, audit[0].address, audit[0].details) == ("state-mv", "fleet.chat", {"to": "fleet.web"})

    rm = run("state", "rm", "fleet.web", "--state", str(db))
    assert rm.exit_code == 0, rm.output
    s = store(db)
    assert [r.address for r in s.resources()] == ["model.llama"]
    assert (s.audit_log()[0].event, s.audit_log()[0].address) == ("state-rm", "fleet.web")
    assert s.serial == serial + 2
    assert s.current_lock() is None


def test_state_rm_unknown_address_changes_nothing_and_releases_lock(project):
    db = project / "infraplan.db"
    before = fingerprint(db)
    result = run("state", "rm", "fleet.nope", "--state", str(db))
    assert result.exit_code == 1
    assert "fleet.nope" in one_error_line(result.output)
    after = fingerprint(db)
    assert (after["serial"], after["audit"]) == (before["serial"], before["audit"])
    assert store(db).current_lock() is None


def test_state_mv_onto_existing_fails_cleanly(project):
    db = project / "infraplan.db"
    with StateStore(db) as s:
        s.put("fleet.web", kind="fleet", attributes={})
    result = run("state", "mv", "fleet.chat", "fleet.web", "--state", str(db))
    assert result.exit_code == 1
    assert "already exists" in one_error_line(result.output)
    assert store(db).current_lock() is None


def test_history(project):
    db = str(project / "infraplan.db")
    text = run("history", "--state", db)
    assert text.exit_code == 0
    (line,) = text.output.splitlines()
    assert re.match(r"^#1 \S+ apply ok by \S+: \+2 ~0 -0 plan [0-9a-f]{12}$", line), line
    doc = json.loads(run("history", "--state", db, "--json").output)
    assert [(h["operation"], h["status"], h["summary"]["add"]) for h in doc] == [("apply", "ok", 2)]


def test_history_of_missing_state(tmp_path):
    db = tmp_path / "none.db"
    result = run("history", "--state", str(db))
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: no state at {db}"
    assert not db.exists()


def test_output(project):
    db = str(project / "infraplan.db")
    assert run("output", "--state", db).output.strip() == "endpoints = []"
    assert json.loads(run("output", "endpoints", "--state", db).output) == []
    missing = run("output", "nope", "--state", db)
    assert missing.exit_code == 1 and "endpoints" in one_error_line(missing.output)


# -- colour --------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["plain", "NO_COLOR", "--no-color"])
def test_non_tty_output_has_no_ansi(project, how):
    env = {"NO_COLOR": "1"} if how == "NO_COLOR" else {}
    pre = ["--no-color"] if how == "--no-color" else []
    outs = [run(*pre, "plan", "config", "--refresh=false", "--var", "replicas=1", env=env).output,
            run(*pre, "validate", "config", env=env).output,
            run(*pre, "apply", "config", "--auto-approve", "--refresh=false", env=env).output]
    for out in outs:
        assert out and "\x1b" not in out, repr(out)


def test_no_color_wins_over_a_forced_terminal(project):
    forced = run("plan", "config", "--refresh=false", "--var", "replicas=1", env={"FORCE_COLOR": "1"}).output
    assert COLOUR_SGR.search(forced), "a forced terminal should be coloured (else this test proves nothing)"
    for env, pre in [({"FORCE_COLOR": "1", "NO_COLOR": "1"}, []), ({"FORCE_COLOR": "1"}, ["--no-color"])]:
        out = run(*pre, "plan", "config", "--refresh=false", "--var", "replicas=1", env=env).output
        assert not COLOUR_SGR.search(out), repr(out)


def test_a_typo_in_provider_settings_is_a_located_error_and_nothing_is_applied(empty_project):
    """Provider settings are the provider's to check; the planner asks every provider it uses
    and places each problem in the config, before anything is refreshed or applied."""
    run("apply", str(empty_project), "--auto-approve")
    before = fingerprint(Path("config/infraplan.db"))
    main = empty_project / "main.yaml"
    main.write_text("provider:\n  local:\n    settings:\n      redy_timeout_s: 3\n      host: 0.0.0.0\n"
                    + main.read_text())
    for command in (["plan"], ["apply", "--auto-approve"]):
        r = run(*command, str(empty_project))
        assert r.exit_code == 1 and "Traceback" not in r.output
        lines = [x for x in r.output.strip().splitlines() if "error:" in x]
        assert len(lines) == 2, r.output  # both problems at once, each located
        assert any(re.search(r"main\.yaml:4:\d+: error: .*\(at provider\.local\.settings\.redy_timeout_s\)", x)
                   for x in lines), r.output
        assert any(re.search(r"main\.yaml:5:\d+: error: .*\(at provider\.local\.settings\.host\)", x)
                   for x in lines), r.output
    assert fingerprint(Path("config/infraplan.db")) == before


def test_saved_plans_are_private_and_say_which_values_to_give_again(empty_project):
    (empty_project / "main.yaml").write_text(SENSITIVE_CONFIG)
    result = run("plan", "config", "--refresh=false", "--var", "hf_token=hf_TopSecret9", "--out", "plan.json")
    assert result.exit_code == 0, result.output
    assert Path("plan.json").stat().st_mode & 0o777 == 0o600
    assert "--var hf_token=..." in result.output
    assert json.loads(Path("plan.json").read_text())["apply_options"]["withheld_vars"] == ["hf_token"]


def test_drift_plan_out_does_not_store_sensitive_vars(empty_project):
    """`drift --plan-out` had a second plan writer that looked up a config field that does not exist."""
    (empty_project / "main.yaml").write_text(SENSITIVE_CONFIG)
    with StateStore(empty_project / "infraplan.db"):
        pass  # an empty state: drift has something to compare with
    result = run("drift", "config", "--var", "hf_token=hf_TopSecret9", "--plan-out", "drift.plan")
    assert result.exit_code in (0, 2), result.output
    text = Path("drift.plan").read_text()
    assert "hf_TopSecret9" not in text and "hf_token" in text
    assert Path("drift.plan").stat().st_mode & 0o777 == 0o600

"""The bad-input corpus: every case in bad_input/<case>/ is run through `validate`, `plan`
and `apply --auto-approve` against an existing state file.

Each case holds config files and an expect.json:

    {"description": "...",
     "args": ["--var", "x=1"],                        # extra CLI arguments (optional)
     "diagnostics": [{"message": "...",               # substring of the summary
                      "location": "main.yaml:9:5",    # file:line:col (None: no location)
                      "path": "fleet.chat.replcas"}], # config path (optional)
     "error_count": 1,                                # exact number of errors reported
     "output_contains": [...], "must_not_contain": [...],
     "xfail": "reason"}                               # a known engine problem

`{dir}` in a message stands for the config directory as given on the command line.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from helpers.cli import children, fingerprint, run

CORPUS = Path(__file__).parent / "bad_input"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expect.json").is_file())
COMMANDS = {
    "validate": ["validate"],
    "plan": ["plan"],
    "apply": ["apply", "--auto-approve"],
}
CONFIG_DIR = "config"  # as given on the command line, relative to the test's cwd
ERROR_LINE = re.compile(r"^(?:\S+:\d+:\d+: )?error: ", re.M)


def _params():
    for case in CASES:
        expect = json.loads((CORPUS / case / "expect.json").read_text())
        marks = [pytest.mark.xfail(reason=expect["xfail"], strict=True)] if expect.get("xfail") else []
        for command in COMMANDS:
            yield pytest.param(case, command, marks=marks, id=f"{case}-{command}")


def test_corpus_is_complete():
    """The corpus has cases, and each one has config files and well-formed expectations."""
    assert len(CASES) >= 15
    for case in CASES:
        d = CORPUS / case
        assert list(d.glob("*.yaml")), f"{case} has no config files"
        expect = json.loads((d / "expect.json").read_text())
        assert expect["diagnostics"], f"{case} expects no diagnostics"
        assert expect.get("exit_code", 1) == 1
        for diag in expect["diagnostics"]:
            assert set(diag) <= {"message", "location", "path"}, case
            assert diag["message"], case


def _expected_line(diag: dict) -> tuple[str, str, str]:
    """(prefix, message, suffix) that one output line must hold."""
    loc = diag.get("location")
    prefix = f"{CONFIG_DIR}/{loc}: error: " if loc else "error: "
    message = diag["message"].replace("{dir}", CONFIG_DIR)
    suffix = f" (at {diag['path']})" if diag.get("path") else ""
    return prefix, message, suffix


@pytest.fixture
def seeded_case(tmp_path, monkeypatch, seeded_template):
    """Copy a case's config into tmp_path/config beside a seeded state file."""

    def make(case: str) -> Path:
        cfg = tmp_path / CONFIG_DIR
        cfg.mkdir()
        for f in (CORPUS / case).iterdir():
            if f.name != "expect.json":
                shutil.copy(f, cfg / f.name)
        shutil.copy(seeded_template, cfg / "infraplan.db")
        monkeypatch.chdir(tmp_path)
        return cfg / "infraplan.db"

    return make


@pytest.mark.parametrize(("case", "command"), list(_params()))
def test_bad_input(case, command, seeded_case):
    expect = json.loads((CORPUS / case / "expect.json").read_text())
    db = seeded_case(case)
    before = fingerprint(db)
    assert before["serial"] > 0  # the state really holds something to protect
    procs = children()

    result = run(*COMMANDS[command], CONFIG_DIR, *expect.get("args", []))
    out = result.output

    assert "Traceback" not in out, out
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == expect.get("exit_code", 1), out

    lines = out.splitlines()
    for diag in expect["diagnostics"]:
        prefix, message, suffix = _expected_line(diag)
        hits = [ln for ln in lines if ln.startswith(prefix) and message in ln and ln.endswith(suffix)]
        assert hits, f"no line `{prefix}…{message}…{suffix}` in:\n{out}"
    for text in expect.get("output_contains", []):
        assert text in out, f"{text!r} not in:\n{out}"
    for text in expect.get("must_not_contain", []):
        assert text not in out, f"{text!r} leaked into:\n{out}"

    errors = ERROR_LINE.findall(out)
    if "error_count" in expect:
        assert len(errors) == expect["error_count"], out
    if command != "validate" and len(errors) > 1:
        assert f"Error: configuration has {len(errors)} errors; nothing was planned or applied" in out
    elif command != "validate":  # one error is said once
        assert "Error: configuration has" not in out

    assert fingerprint(db) == before, "the state file changed"
    assert children() <= procs, "a process was started"


@pytest.mark.parametrize("case", [c for c in CASES
                                  if not json.loads((CORPUS / c / "expect.json").read_text()).get("xfail")])
def test_bad_input_validate_json(case, seeded_case):
    """`validate --json` reports the same diagnostics, with structured locations."""
    expect = json.loads((CORPUS / case / "expect.json").read_text())
    seeded_case(case)
    result = run("validate", CONFIG_DIR, "--json", *expect.get("args", []))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    errors = [d for d in doc["diagnostics"] if d["severity"] == "error"]
    if "error_count" in expect:
        assert len(errors) == expect["error_count"]
    for diag in expect["diagnostics"]:
        message = diag["message"].replace("{dir}", CONFIG_DIR)
        loc = diag.get("location")
        want_loc = None
        if loc:
            file, line, col = loc.rsplit(":", 2)
            want_loc = {"file": f"{CONFIG_DIR}/{file}", "line": int(line), "col": int(col)}
        assert any(message in d["summary"] and d["location"] == want_loc and d["path"] == diag.get("path", d["path"])
                   for d in errors), f"{diag} not in {errors}"
    for text in expect.get("must_not_contain", []):
        assert text not in result.stdout

"""The bad-plan-file corpus: each case in bad_plan_files/ edits a real saved plan (or replaces
its text) and runs `apply PLANFILE` and `show PLANFILE` on it.

A case is one JSON file:

    {"description": "...",
     "edits": [{"path": ["changes", 0, "kind"], "value": 3},       # set a value
               {"path": ["state", "serial"], "delete": true}],     # or delete a key
     "text": "...",            # or: the whole file ("${DEEP}" is "[" x 100000)
     "bytes_hex": "...",       # or: the whole file as bytes
     "truncate": 0.5,          # or: the saved plan cut to this fraction of its length
     "message": "..."}         # must be in the one error line, which also names the file

Every case must give exactly one `Error: ...` line naming the file, exit 1, no traceback,
and leave the state file and the processes as they were.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.cli import children, fingerprint, run

CORPUS = Path(__file__).parent / "bad_plan_files"
CASES = sorted(p.stem for p in CORPUS.glob("*.json"))
PLAN = "plan.json"


@pytest.fixture
def saved_plan(project) -> bytes:
    """A real saved plan (update fleet.chat, create fleet.chat[0], model.llama unchanged), as bytes."""
    result = run("plan", "config", "--refresh=false", "--var", "replicas=1", "--out", PLAN)
    assert result.exit_code == 0, result.output
    return Path(PLAN).read_bytes()


def _edited(original: bytes, case: dict) -> bytes:
    if "text" in case:
        return case["text"].replace("${DEEP}", "[" * 100_000).encode()
    if "bytes_hex" in case:
        return bytes.fromhex(case["bytes_hex"])
    if "truncate" in case:
        return original[: int(len(original) * case["truncate"])]
    doc = json.loads(original)
    for edit in case["edits"]:
        *parents, last = edit["path"]
        node = doc
        for step in parents:
            node = node[step]
        if edit.get("delete"):
            del node[last]
        else:
            node[last] = edit["value"]
    return json.dumps(doc, indent=1).encode()


def test_corpus_is_complete():
    assert len(CASES) >= 20
    for case in CASES:
        spec = json.loads((CORPUS / f"{case}.json").read_text())
        assert spec["description"] and spec["message"], case
        assert sum(k in spec for k in ("edits", "text", "bytes_hex", "truncate")) == 1, case


@pytest.mark.parametrize("command", ["apply", "show"])
@pytest.mark.parametrize("case", CASES)
def test_bad_plan_file(case, command, saved_plan, project):
    spec = json.loads((CORPUS / f"{case}.json").read_text())
    Path(PLAN).write_bytes(_edited(saved_plan, spec))
    db = project / "infraplan.db"
    before = fingerprint(db)
    procs = children()

    result = run(command, PLAN)

    assert "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert PLAN in lines[0] and spec["message"] in lines[0], lines[0]
    assert len(lines[0]) < 400, lines[0]
    assert fingerprint(db) == before, "the state file changed"
    assert children() <= procs, "a process was started"


def test_the_unedited_plan_still_shows_and_round_trips(saved_plan):
    """Control: the corpus's base plan passes the schema, and its digest survives the reading."""
    from infraplan.plan.planfile import load_plan

    result = run("show", "--json", PLAN)
    assert result.exit_code == 0, result.output
    plan, options = load_plan(PLAN)
    assert options.var_args == ["replicas=1"]
    assert plan.serial == json.loads(saved_plan)["state"]["serial"]
    assert json.loads(result.stdout)["changes"] == json.loads(saved_plan)["changes"]

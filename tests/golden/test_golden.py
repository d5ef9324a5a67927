"""Golden plan tests: config + state -> the expected plan text and plan JSON.

Each folder under ``cases/`` is one case:

    config/*.yaml    the configuration
    state.json       optional: resource records to seed the state with (a list of
                     {address, kind, provider, status, attributes, dependencies,
                      deposed, pending, error}; missing fields take the defaults
                     of a ready, current object)
    case.json        optional: {"targets": [...], "replace": [...], "destroy": bool,
                     "vars": {name: value}, "refresh": bool (default false: no
                     provider is asked anything), "expect_error": "substring",
                     "xfail": "reason the engine is wrong"}
    expected.txt     the rendered plan (no colour, width 100)
    expected.json    the plan JSON without its volatile fields

Regenerate the expected files after an intended change of the engine's output with

    UPDATE_GOLDEN=1 /work/venv/bin/pytest tests/golden

then read the diff of every expected file before keeping it. Cases marked
``xfail`` are never rewritten: their expected files hold the output the engine
*should* give, written by hand.

Machine-specific text (the case folder's path, random deposed keys) is
normalised before comparing: the case folder reads as ``<case>``, each deposed
key as the one written in state.json.
"""

from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from infraplan.errors import InfraplanError
from infraplan.plan.planner import PlanOptions
from infraplan.cli.views.plan import render_plan
from infraplan.state import StateStore
from infraplan.workspace import Workspace

CASES_DIR = Path(__file__).parent / "cases"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
VOLATILE = ("created_at", "infraplan_version")
WIDTH = 100


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def _params():
    out = []
    for case in sorted(p for p in CASES_DIR.iterdir() if p.is_dir()):
        spec = _read_json(case / "case.json", {})
        marks = [pytest.mark.xfail(reason=spec["xfail"], strict=True)] if spec.get("xfail") else []
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


def seed_state(path: Path, records: list[dict]) -> dict[str, str]:
    """Write `records` into a new state at `path` through the store's public API.

    Returns {random deposed key given by the store: deposed key written in the record}.
    """
    keys: dict[str, str] = {}
    store = StateStore(path)
    try:
        # an address's deposed objects first: each is made current, then deposed
        ordered = sorted(records, key=lambda r: (r["address"], not r.get("deposed")))
        for r in ordered:
            address, kind, provider = r["address"], r["kind"], r.get("provider")
            attrs, deps = r.get("attributes") or {}, r.get("dependencies") or []
            status, pending = r.get("status", "ready"), r.get("pending")
            if kind == "replica":
                store.record_intent(address, action="create", kind=kind, provider=provider,
                                    attributes=attrs, dependencies=deps)
                if pending is None:
                    store.record_result(address, attributes=attrs, dependencies=deps)
                elif pending.get("action", "create") != "create":
                    store.record_result(address, attributes=attrs, dependencies=deps)
                    store.record_intent(address, action=pending["action"], kind=kind, provider=provider,
                                        attributes=pending.get("attributes", attrs),
                                        dependencies=pending.get("dependencies", deps))
            else:
                store.put(address, kind=kind, attributes=attrs, provider=provider, dependencies=deps)
            if status == "tainted":
                store.taint(address)
            elif status == "failed":
                store.record_failure(address, r.get("error") or "failed")
            if r.get("deposed"):
                keys[store.depose(address)] = r["deposed"]
        real_key = {wanted: real for real, wanted in keys.items()}
        got = {(x.address, x.deposed): x for x in store.resources()}
        assert len(got) == len(records), "two records in state.json share an address and deposed key"
        for r in records:  # the seeding must give exactly what the case says
            rec = got[(r["address"], real_key.get(r.get("deposed", ""), ""))]
            assert rec.status == r.get("status", "ready"), r["address"]
            assert rec.attributes == (r.get("attributes") or {}), r["address"]
            assert (rec.pending or {}).get("action") == (r.get("pending") or {}).get("action"), r["address"]
    finally:
        store.close()
    return keys


def _normalise(text: str, case: Path, keys: dict[str, str]) -> str:
    text = text.replace(str(case.resolve()), "<case>").replace(str(case), "<case>")
    for real, wanted in keys.items():
        text = text.replace(real, wanted)
    return text


def plan_case(case: Path, tmp_path: Path):
    """(rendered text, plan JSON) for one case, normalised; raises what the planner raises.

    Run from the case folder (the caller changes into it) so that config locations read
    ``config/main.yaml:LINE:COL`` and lines wrap the same on every machine.
    """
    spec = _read_json(case / "case.json", {})
    state_path = tmp_path / "infraplan.db"
    keys = seed_state(state_path, _read_json(case / "state.json", []))
    ws = Workspace(Path("config"), state_path=state_path, env={},
                   var_args=[f"{k}={v}" for k, v in spec.get("vars", {}).items()])
    plan = ws.plan(PlanOptions(
        refresh=spec.get("refresh", False),
        targets=tuple(spec.get("targets", ())),
        replace=tuple(spec.get("replace", ())),
        destroy=spec.get("destroy", False),
    ))
    out = StringIO()
    render_plan(plan, Console(file=out, width=WIDTH, no_color=True, force_terminal=False))
    body = plan.to_json()
    for k in VOLATILE:
        body.pop(k)
    body["state"].pop("lineage")
    body["state"].pop("serial")
    body["config"].pop("path")
    body["config"].pop("digest")
    text = json.dumps(body, indent=2, sort_keys=True, default=str) + "\n"
    return _normalise(out.getvalue(), case, keys), _normalise(text, case, keys)


@pytest.mark.parametrize("case", _params())
def test_golden(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(case)
    spec = _read_json(case / "case.json", {})
    if "expect_error" in spec:
        with pytest.raises(InfraplanError) as info:
            plan_case(case, tmp_path)
        assert spec["expect_error"] in _normalise(str(info.value), case, {})
        return
    text, body = plan_case(case, tmp_path)
    if UPDATE and not spec.get("xfail"):
        (case / "expected.txt").write_text(text)
        (case / "expected.json").write_text(body)
    assert text == (case / "expected.txt").read_text()
    assert json.loads(body) == json.loads((case / "expected.json").read_text())

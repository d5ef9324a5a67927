"""Fuzz the plan-file parser (`load_plan`, what `apply PLANFILE` and `show PLANFILE` read) with
hypothesis: real saved plans with values swapped for others of any type, keys deleted or added,
and their text cut, spliced or nested deeply. Only `StalePlanError` (one line) may come out;
a plan the parser accepts must also render as `show` and `show --json` print it.

Bounded: 200 examples per test, the same ones each run; INFRAPLAN_FUZZ_EXAMPLES=N searches longer, at random.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.cli import SMALL_CONFIG, run
from infraplan.cli.views.plan import PlainConsole, render_plan
from infraplan.errors import StalePlanError
from infraplan.plan.planfile import load_plan
from infraplan.plan.terraform_json import terraform_plan

_EXAMPLES = os.environ.get("INFRAPLAN_FUZZ_EXAMPLES")
FUZZ = settings(max_examples=int(_EXAMPLES or 200), deadline=None, derandomize=_EXAMPLES is None,
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def saved_plans(tmp_path_factory) -> list[dict]:
    """Two real saved plans: creates from an empty state, and an update with replacements of a seeded one."""
    root = tmp_path_factory.mktemp("plans")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        Path("config").mkdir()
        Path("config/main.yaml").write_text(SMALL_CONFIG)
        assert run("plan", "config", "--refresh=false", "--var", "replicas=2", "--out", "create.plan").exit_code == 0
        assert run("apply", "config", "--auto-approve", "--refresh=false").exit_code == 0  # 0 replicas: no process
        Path("config/main.yaml").write_text(SMALL_CONFIG.replace("team: ml-platform", "team: research"))
        assert run("plan", "config", "--refresh=false", "--var", "replicas=1", "--out", "update.plan").exit_code == 0
        return [json.loads(Path(name).read_text()) for name in ("create.plan", "update.plan")]
    finally:
        os.chdir(cwd)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
              st.text(max_size=12),
              st.sampled_from(["create", "update", "replace", "delete", "noop", "refresh", "fleet", "replica",
                               "router", "model", "1.0", "", "fleet.chat[0]", "fleet.chat", "x" * 500])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)
JSON_BITS = ["{", "}", "[", "]", ",", ":", '"', "\\", "null", "1e999", "-", "\x00", "\xff", "[" * 300, "NaN"]


def _only_typed_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "edited.plan"
        path.write_bytes(data)
        try:
            plan, _options = load_plan(path)
        except StalePlanError as exc:
            line = exc.one_line()
            assert "\n" not in line and str(path) in line and len(line) < 600, line
            return
    render_plan(plan, PlainConsole(io.StringIO()))  # show PLANFILE
    json.dumps(plan.to_json(), default=str)         # show --json PLANFILE
    json.dumps(terraform_plan(plan), default=str)   # show --json --format terraform PLANFILE
    plan.digest()                                   # apply PLANFILE compares digests


@FUZZ
@given(st.data())
def test_edited_values(saved_plans, data):
    doc = copy.deepcopy(data.draw(st.sampled_from(saved_plans)))
    for _ in range(data.draw(st.integers(1, 4))):
        paths = list(_paths(doc))[1:]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        node = doc
        for step in path[:-1]:
            node = node[step]
        op = data.draw(st.sampled_from(["set", "delete", "add"]))
        if op == "set":
            node[path[-1]] = data.draw(json_values)
        elif op == "delete":
            del node[path[-1]]
        elif isinstance(node[path[-1]], dict):
            node[path[-1]][data.draw(st.text(max_size=8))] = data.draw(json_values)
        elif isinstance(node[path[-1]], list):
            node[path[-1]].append(data.draw(json_values))
    _only_typed_errors(json.dumps(doc).encode())


@FUZZ
@given(st.data())
def test_edited_text(saved_plans, data):
    text = json.dumps(data.draw(st.sampled_from(saved_plans)), indent=1).encode()
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["cut", "insert", "overwrite", "nest"]))
        if op == "cut":
            text = text[:at]
        elif op == "insert":
            text = text[:at] + data.draw(st.sampled_from(JSON_BITS)).encode("utf-8", "surrogatepass") + text[at:]
        elif op == "overwrite":
            junk = data.draw(st.binary(min_size=1, max_size=8))
            text = text[:at] + junk + text[at + len(junk):]
        else:
            depth = data.draw(st.sampled_from([150, 250, 100_000]))
            text = text[:at] + b"[" * depth + text[at:]
    _only_typed_errors(text)

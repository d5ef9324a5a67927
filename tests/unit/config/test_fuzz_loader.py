"""Fuzz the config loader (`validate_config`, what `infraplan validate` runs) with hypothesis:
random YAML-ish documents built from the config language's own keys, and mutations of
examples/quickstart's config. Only diagnostics or a typed infraplan error may come out
(what the CLI turns into one-line messages), never another exception.

Bounded: 200 examples per test, the same ones each run; set INFRAPLAN_FUZZ_EXAMPLES=N for a
longer, random search.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from helpers.paths import REPO
from infraplan.config import validate_config
from infraplan.errors import InfraplanError
from infraplan.models import config as config_models

QUICKSTART = (REPO / "examples" / "quickstart" / "main.yaml").read_text()
_EXAMPLES = os.environ.get("INFRAPLAN_FUZZ_EXAMPLES")
FUZZ = settings(max_examples=int(_EXAMPLES or 200), deadline=None, derandomize=_EXAMPLES is None,
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _config_keys() -> list[str]:
    keys: set[str] = set()
    for obj in vars(config_models).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == config_models.__name__:
            keys |= set(obj.model_fields)
    return sorted(keys)


KEYS = _config_keys()
NAMES = ["llama", "chat", "m", "x", "replicas", "revision", "a-b", "1bad", "each"]
TRICKY = ["${var.replicas}", "${var.nope}", "${fleet.chat.endpoint}", "${model.llama.revision}", "${each.key}",
          "${local.team}", "$${x}", "${", "}", "${var.replicas", "model.llama", "fleet.chat", "H100:1", "H100:0",
          "A100:x", "sim", "sglang", "local", "null", "skypilot", "hf://meta-llama/Llama-3.1-8B-Instruct",
          "/nonexistent/model", "x" * 300, "^(a+)+$", "(?=x)", "[", "1h", "-5s", "canary", "blue_green",
          "&a", "*a", "!!python/object:os.system", "~", "\u202e", "\x00", "1e400", "0x10"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(TRICKY), st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=5)),
    max_leaves=25,
)
blocks = st.dictionaries(st.sampled_from(NAMES), st.one_of(values, st.dictionaries(st.sampled_from(KEYS), values,
                                                                                     max_size=6)), max_size=3)
documents = st.dictionaries(st.sampled_from(list(config_models.ConfigFile.model_fields) + ["bogus"]), blocks,
                            max_size=5)
var_args = st.lists(st.builds(lambda n, v: f"{n}={v}", st.sampled_from(["replicas", "revision", "nope", ""]),
                              st.one_of(st.sampled_from(["2", "-1", "9", "abc", "[1]", "{a: 1}", "0e9e39f", "1e400"]),
                                        st.text(max_size=10))),
                    max_size=2)

YAML_BITS = [": ", "- ", "&a ", "*a", "{", "}", "[", "]", "'", '"', "#", "|", ">", "!!str ", "<<: *a", "\t", "\n",
             "${", "}", "  ", "---\n", "...\n", "%YAML 1.1\n", "? "]
line_edit = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10_000)),
    st.tuples(st.just("duplicate"), st.integers(0, 10_000)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.lists(st.sampled_from(YAML_BITS), max_size=4).map("".join)),
    st.tuples(st.just("value"), st.integers(0, 10_000), scalars.map(lambda v: json.dumps(v, default=str))),
    st.tuples(st.just("indent"), st.integers(0, 10_000), st.integers(-4, 4)),
    st.tuples(st.just("chars"), st.integers(0, 10_000), st.text(max_size=6)),
)


def _mutate(text: str, edits: list[tuple]) -> str:
    lines = text.splitlines()
    for op, at, *arg in edits:
        if not lines:
            break
        i = at % len(lines)
        line = lines[i]
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "insert":
            col = at % (len(line) + 1)
            lines[i] = line[:col] + arg[0] + line[col:]
        elif op == "value" and ":" in line:
            lines[i] = line.split(":", 1)[0] + ": " + arg[0]
        elif op == "indent":
            lines[i] = " " * max(0, arg[0]) + (line[-arg[0]:] if arg[0] < 0 and len(line) >= -arg[0] else line)
        elif op == "chars":
            col = at % (len(line) + 1)
            lines[i] = line[:col] + arg[0] + line[col + len(arg[0]):]
    return "\n".join(lines) + "\n"


def _only_typed_errors(files: dict[str, bytes], args: list[str]) -> None:
    """validate_config returns diagnostics (each printable) or raises an InfraplanError; nothing else."""
    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
        try:
            _config, diags = validate_config(d, var_args=args, env={})
        except InfraplanError as exc:
            assert "\n" not in exc.one_line()
            return
        for diag in diags:
            assert "\n" not in diag.one_line()
            json.dumps(diag.to_json())


@FUZZ
@given(documents, var_args)
def test_random_documents(doc, args):
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    _only_typed_errors({"main.yaml": text.encode()}, args)


@FUZZ
@given(st.lists(line_edit, min_size=1, max_size=6), var_args)
def test_mutated_quickstart(edits, args):
    _only_typed_errors({"main.yaml": _mutate(QUICKSTART, edits).encode()}, args)


@FUZZ
@given(st.binary(max_size=200), st.lists(line_edit, max_size=3))
def test_raw_bytes_and_two_files(junk, edits):
    """Bytes that may not be UTF-8 or YAML at all, beside a (mutated) second file defining the same blocks."""
    _only_typed_errors({"a.yaml": junk, "main.yaml": _mutate(QUICKSTART, edits).encode(),
                        "more.yml": QUICKSTART.encode()}, [])


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


QUICKSTART_DOC = yaml.safe_load(QUICKSTART)
QUICKSTART_PATHS = list(_paths(QUICKSTART_DOC))[1:]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(QUICKSTART_PATHS), st.sampled_from(["set", "delete", "add"]), values,
                          st.one_of(st.sampled_from(KEYS), st.text(max_size=6))), min_size=1, max_size=4),
       var_args)
def test_structured_mutations_of_quickstart(edits, args):
    """The quickstart's config with values swapped for others of any type, keys deleted or added."""
    import copy

    doc = copy.deepcopy(QUICKSTART_DOC)
    for path, op, value, key in edits:
        node = doc
        try:
            for step in path[:-1]:
                node = node[step]
            last = path[-1]
            if op == "set":
                node[last] = value
            elif op == "delete":
                del node[last]
            elif isinstance(node[last], dict):
                node[last][key] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or retyped this path
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    _only_typed_errors({"main.yaml": text.encode()}, args)

"""--json and --no-color on every command, one JSON writer, and no colour where it is off.

The command list is read from the click group, so a new command without the shared options
fails here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from enum import Enum
from pathlib import Path

import click
import pytest

from helpers.cli import SMALL_CONFIG, run
from infraplan.cli.main import cli
from infraplan.cli.options import to_json

ANSI = re.compile(r"\x1b\[")


def leaf_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += leaf_commands(cmd, prefix + (name,))
        else:
            out.append(prefix + (name,))
    return out


COMMANDS = leaf_commands()


def _command(path: tuple[str, ...]) -> click.Command:
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    return cmd


def test_the_list_is_the_whole_cli():
    assert {"plan", "apply", "show", "drift", "bench"} <= {c[0] for c in COMMANDS}
    assert ("state", "show") in COMMANDS and ("plugins", "list") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_accepts_json_and_no_color(path):
    opts = {o for p in _command(path).params for o in p.opts}
    assert {"--json", "--no-color"} <= opts
    result = run(*path, "--json", "--no-color", "--help")
    assert result.exit_code == 0, result.output
    assert "--json" in result.stdout and "--no-color" in result.stdout


# A command line per command that works on the seeded project (cwd: its parent; state in config/).
STATE = "config/infraplan.db"
JSON_RUNS = {
    ("validate",): ["config"],
    ("plan",): ["config", "--refresh=false"],
    ("apply",): ["config", "--refresh=false", "--auto-approve"],
    ("destroy",): ["config", "--refresh=false", "--auto-approve"],
    ("output",): ["--state", STATE],
    ("show",): ["--state", STATE],
    ("graph",): ["config"],
    ("schema",): [],
    ("providers",): [],
    ("history",): ["--state", STATE],
    ("state", "list"): ["--state", STATE],
    ("state", "show"): ["fleet.chat", "--state", STATE],
    ("state", "mv"): ["fleet.chat", "fleet.talk", "--state", STATE],
    ("state", "rm"): ["fleet.chat", "--state", STATE],
    ("plugins", "list"): [],
}


def _json_lines(text: str) -> list:
    """A document, or one document per line (apply's events)."""
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("path", sorted(JSON_RUNS), ids=" ".join)
def test_json_output_parses(project, path):
    result = run(*path, *JSON_RUNS[path], "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("\n")
    docs = _json_lines(result.stdout)
    assert docs and all(isinstance(d, (dict, list)) for d in docs)


def test_json_shapes_of_the_new_ones(project):
    listed = json.loads(run("state", "list", "--state", STATE, "--json").stdout)
    assert {"address": "fleet.chat", "deposed": "", "status": "ready"} in listed
    graph = json.loads(run("graph", "config", "--json").stdout)
    assert ["model.llama", "fleet.chat"] in graph["edges"] or ["fleet.chat", "model.llama"] in graph["edges"]
    assert json.loads(run("state", "rm", "fleet.chat", "--state", STATE, "--json").stdout) == {
        "removed": ["fleet.chat"]}


@pytest.mark.parametrize("args, code", [
    (["show", "--json"], 1),                                # no state here
    (["state", "list", "--json"], 1),
    (["plan", "nowhere", "--json"], 1),                     # a config error
    (["bench", "fleet.nope", "--json"], 1),
    (["--json"], None),
])
def test_json_errors_are_one_object(tmp_path, monkeypatch, args, code):
    monkeypatch.chdir(tmp_path)
    if code is None:  # the root has no --json: a usage error, as before
        assert run(*args).exit_code == 1
        return
    result = run(*args)
    assert result.exit_code == code, result.output
    body = json.loads(result.stdout)
    assert body["exit_code"] == code
    assert isinstance(body["error"], str) and "\n" not in body["error"] and body["error"]
    (human,) = result.stderr.splitlines()  # said once, in one line
    if body.get("diagnostics"):  # one config error is its own located line
        assert human.endswith(f"error: {body['diagnostics'][0]['summary']}")
    else:
        assert human == f"Error: {body['error']}"  # the human line is unchanged
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_with_json_answer_in_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("plan", "--json", "--parallelism", "0")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["exit_code"] == 1 and "--parallelism" in body["error"]
    assert result.stderr == ("Error: Invalid value for '--parallelism': 0 is not in the range 1<=x<=1000. "
                             "(see 'cli plan --help')\n")  # the human line, without JSON's help
    assert run("plan", "--parallelism", "0").stdout == ""


def test_config_errors_carry_their_diagnostics_in_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "main.yaml").write_text(SMALL_CONFIG.replace("model.llama", "model.nope"))
    result = run("plan", ".", "--refresh=false", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["error"].startswith("configuration has 1 error")
    assert any("model.nope" in d["summary"] for d in body["diagnostics"])


def test_without_json_stdout_stays_empty_on_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("show")
    assert result.exit_code == 1 and result.stdout == ""


# -- colour -----------------------------------------------------------------------
COLOUR_ENV = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}  # rich would colour a captured stream


@pytest.mark.parametrize("how", ["root-flag", "command-flag", "NO_COLOR"])
@pytest.mark.parametrize("args", [["plan", "config", "--refresh=false"], ["show", "--state", STATE]],
                         ids=["plan", "show"])
def test_no_color_means_no_ansi(project, monkeypatch, how, args):
    env = dict(COLOUR_ENV)
    coloured = run(*args, env=env)
    assert coloured.exit_code == 0 and ANSI.search(coloured.stdout), "the control: colour when forced"
    if how == "NO_COLOR":
        env["NO_COLOR"] = "1"
        plain = run(*args, env=env)
    elif how == "root-flag":
        plain = run("--no-color", *args, env=env)
    else:
        plain = run(*args, "--no-color", env=env)
    assert plain.exit_code == 0, plain.output
    assert not ANSI.search(plain.stdout)
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured.stdout).split() == plain.stdout.split()


def test_not_a_tty_means_no_ansi(project):
    result = run("plan", "config", "--refresh=false")
    assert result.exit_code == 0 and not ANSI.search(result.stdout)


# -- the encoder ----------------------------------------------------------------------
class _Colour(Enum):
    RED = "red"


def test_one_encoder_for_datetimes_enums_and_paths():
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    text = to_json({"at": when, "day": when.date(), "c": _Colour.RED, "p": Path("/a/b"), "s": {"y", "x"}})
    assert json.loads(text) == {"at": "2026-01-02T03:04:05+00:00", "day": "2026-01-02", "c": "red",
                                "p": "/a/b", "s": ["x", "y"]}

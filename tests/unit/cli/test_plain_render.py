"""Plans printed to a pipe skip rich (PlainConsole) and read the same as through rich."""

from __future__ import annotations

import io

from rich.console import Console

from helpers.cli import SMALL_CONFIG, run
from infraplan.plan.planner import PlanOptions
from infraplan.cli.views.plan import PlainConsole, make_console, render_plan
from infraplan.workspace import Workspace

# rich markup and emoji codes in a value must come out as they are written
MARKUP = "[bold]x[/bold] :smile: [y]"
CONFIG = SMALL_CONFIG + f"""\
  note:
    value: "{MARKUP}"
"""


def test_plain_console_only_when_surely_not_a_terminal(monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    assert isinstance(make_console(text_only=True), PlainConsole)  # pytest's stdout is no terminal
    assert not isinstance(make_console(), PlainConsole)
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert not isinstance(make_console(text_only=True), PlainConsole)


def test_plan_text_is_the_same_with_and_without_rich(tmp_path, monkeypatch):
    (tmp_path / "main.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    result = run("plan", "--refresh=false")
    assert result.exit_code == 0, result.output
    assert f'  note = "{MARKUP}"\n' in result.output
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in result.output

    plan = Workspace(tmp_path).plan(PlanOptions(refresh=False))
    through_rich = io.StringIO()
    render_plan(plan, Console(file=through_rich, width=200, no_color=True, force_terminal=False))
    plain = io.StringIO()
    render_plan(plan, PlainConsole(plain))
    assert plain.getvalue() == through_rich.getvalue() == result.output

"""What people read: rollout progress as sentences, parameter counts and timestamps as
people write them (never `key=value` dumps, `8030000000.0` or epoch seconds)."""

from __future__ import annotations

import io

from infraplan.cli.views.plan import PlainConsole, render_plan
from infraplan.cli.views.progress import progress
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind
from infraplan.plan.model import Change, Plan
from infraplan.util.units import human_count


def _lines(events, capsys) -> list[str]:
    on_event = progress(PlainConsole(io.StringIO()), as_json=False)
    for ev in events:
        on_event(ev)
    return capsys.readouterr().out.splitlines()


def test_rollout_progress_reads_as_sentences(capsys):
    f = "fleet.chat"
    lines = _lines([
        {"type": "rollout", "fleet": f, "step": "start", "at": 1.0, "strategy": "rolling",
         "replace": ["fleet.chat[0]", "fleet.chat[1]"], "create": [], "delete": ["fleet.chat[2]"]},
        {"type": "rollout", "fleet": f, "step": "gate:readiness fleet.chat[0]", "passed": True},
        {"type": "rollout", "fleet": f, "step": "batch", "at": 2.0, "detail": "fleet.chat[0] replaced",
         "replaced": ["fleet.chat[0]"], "serving": 2},
        {"type": "rollout", "fleet": f, "step": "scale-down", "at": 3.0, "detail": "1 removed",
         "removed": ["fleet.chat[2]"]},
        {"type": "still", "op": "rollout", "address": f, "elapsed": 12.0},
        {"type": "rollout", "fleet": f, "step": "rollback", "reason": "canary 50%: error rate 0.2 > 0.05"},
        {"type": "rollout", "fleet": f, "step": "done", "at": 4.0},
    ], capsys)
    assert lines == [
        "fleet.chat: rolling rollout started: 2 replicas to replace, 1 replica to remove.",
        "fleet.chat: check readiness fleet.chat[0] passed.",
        "fleet.chat: rollout batch: fleet.chat[0] replaced; 2 replicas serving.",
        "fleet.chat: rollout scale down: 1 removed.",
        "fleet.chat: Still rolling out... [12s elapsed]",
        "fleet.chat: rollout rolled back: canary 50%: error rate 0.2 > 0.05",
        "fleet.chat: rollout complete.",
    ]
    assert not any("=" in ln or "['" in ln for ln in lines)


def test_parameter_counts_read_as_people_write_them():
    assert [human_count(n) for n in (8.03e9, 70e9, 405e9, 1.5e12, 350e6, 999)] == [
        "8.03B", "70B", "405B", "1.5T", "350M", "999"]


def test_plan_shows_parameter_counts_and_timestamps_readably():
    out = io.StringIO()
    plan = Plan(changes=[
        Change(address="model.llama", kind=ResourceKind.MODEL, action=Action.DELETE,
               before={"parameters": 8030000000.0, "source": "hf://x/y"}),
        Change(address="fleet.chat[0]", kind=ResourceKind.REPLICA, action=Action.DELETE,
               before={"pid": 4242, "started_at": 1767225600.0}),
    ], lineage=None, serial=1, config_digest="", config_path=".", destroy=True)
    render_plan(plan, PlainConsole(out))
    text = out.getvalue()
    assert "- parameters = 8.03B\n" in text
    assert '- started_at = "2026-01-01T00:00:00Z"\n' in text
    assert "8030000000" not in text and "1767225600" not in text
    assert "- pid = 4242\n" in text  # other numbers stay as they are

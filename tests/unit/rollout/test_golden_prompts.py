"""Golden prompts against a real sim server."""

from __future__ import annotations

from infraplan.models.config import GoldenPrompt
from infraplan.rollout.golden import check_answer, run_golden


def test_check_answer_properties():
    p = GoldenPrompt(prompt="x", contains=["ok"], regex=r"^\{", json_valid=True, max_output_tokens=3)
    assert check_answer(p, '{"ok": 1}', 3) == []
    problems = check_answer(p, "not ok json", 5)
    assert len(problems) == 3 and any("JSON" in x for x in problems) and any("5 tokens" in x for x in problems)
    assert "does not contain 'ok'" in check_answer(p, '{"a": 1}', 1)[0]


def test_golden_prompts_against_a_sim(rollout_fleet):
    url = rollout_fleet(1).endpoints()[0]
    good = GoldenPrompt(prompt="say something", max_tokens=6, regex=r"^[a-z]+( [a-z]+){5}$", max_output_tokens=6)
    report = run_golden(url, [good])
    assert report.passed, report.results
    assert report.results[0]["output_tokens"] == 6 and report.results[0]["answer"]
    # the sim answers filler words: not JSON, and 8 tokens are more than 4
    bad = [GoldenPrompt(prompt="give json", max_tokens=8, json_valid=True),
           GoldenPrompt(prompt="be short", max_tokens=8, max_output_tokens=4)]
    report = run_golden(url, bad)
    assert not report.passed
    assert [bool(r["problems"]) for r in report.results] == [True, True]
    assert "8 tokens" in report.results[1]["problems"][0]
    # an unreachable server is a failed check, not an exception
    assert not run_golden("http://127.0.0.1:9", [good], timeout=1).passed

"""Drift alerts and idle windows set in the config (`alert` blocks, a fleet's `idle_after`)."""

from __future__ import annotations

import json
import time

from helpers.drift import Webhook
from helpers.cli import run

ALERTS = """\
variable:
  hook: {{type: string, sensitive: true, default: "{all}"}}
alert:
  oncall:
    url: ${{var.hook}}
    events: [drift]
  pager:
    url: "{serious}"
    min_severity: warning
  releases:
    url: "{serious}"
    events: [rollout]
"""


def findings(res) -> dict[tuple[str, str], dict]:
    return {(f["kind"], f["address"]): f for f in json.loads(res.stdout)["findings"]}


def test_config_alert_block_gets_drift_and_fleet_idle_after_is_the_window(make_fleet, webhook):
    fleet = make_fleet(1)
    serious = Webhook()  # gets only warning and above: an idle replica is not for it
    try:
        main = fleet.path / "main.yaml"
        text = main.read_text().replace("    provider: local\n", "    provider: local\n    idle_after: 1s\n")
        main.write_text(text + ALERTS.format(all=webhook.url, serious=serious.url))
        time.sleep(1.1)  # the replica has served nothing for longer than its fleet's idle_after

        longer = fleet.drift("--json", "--no-orphans", "--idle-after", "1h")  # the flag overrides every fleet
        assert longer.exit_code == 0, longer.output
        assert not findings(longer)
        assert webhook.messages == []

        res = fleet.drift("--json", "--no-orphans")  # no --alert, no --idle-after: all from the config
        assert res.exit_code == 2, res.output
        got = findings(res)
        assert list(got) == [("idle", "fleet.web[0]")]
        assert "(window 1s)" in got[("idle", "fleet.web[0]")]["summary"]
        assert len(webhook.messages) == 1
        assert "1 new finding(s)" in webhook.messages[0]["title"]
        assert "[idle] fleet.web[0]" in webhook.messages[0]["message"]
        assert serious.messages == []
        report = json.loads(res.stdout)
        assert report["alerts"]["sent"] == 1 and report["alerts"]["error"] is None
        assert sorted(report["alert_targets"]) == ["oncall: json://…", "pager: json://…"]  # not `releases`

        human = fleet.drift("--no-orphans")  # de-duplicated: nothing new to send
        assert human.exit_code == 2
        assert "Alerting: oncall: json://…" in human.output
        assert len(webhook.messages) == 1
        for out in (res.output, human.output, run("drift", str(fleet.path), "--history", "--json").output):
            assert webhook.url not in out and serious.url not in out
    finally:
        serious.close()


def test_config_alerts_and_alert_flag_both_get_the_message(make_fleet, webhook):
    fleet = make_fleet(1)
    other = Webhook()
    try:
        main = fleet.path / "main.yaml"
        main.write_text(main.read_text() + f"alert:\n  oncall:\n    url: \"{webhook.url}\"\n")
        fleet.kill("fleet.web[0]")
        res = fleet.drift("--json", "--no-orphans", "--alert", other.url)
        assert res.exit_code == 2, res.output
        assert ("missing", "fleet.web[0]") in findings(res)
        assert len(webhook.messages) == 1 and len(other.messages) == 1
        assert webhook.messages[0]["title"] == other.messages[0]["title"]
        assert sorted(json.loads(res.stdout)["alert_targets"]) == ["--alert: json://…", "oncall: json://…"]
    finally:
        other.close()

"""Alert de-duplication over several drift runs, sent through Apprise to a webhook on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from helpers.cli import run
from helpers.drift import CONFIG
from helpers.net import free_port
from infraplan.alerts import send_alert, track_and_alert
from infraplan.drift import Evidence, Finding
from infraplan.errors import InfraplanError
from infraplan.state import StateStore


@pytest.fixture
def gone(tmp_path):
    """A config of one replica and a state whose replica's server is long gone (no process needed)."""
    (tmp_path / "main.yaml").write_text(CONFIG.format(replicas=1))
    state = tmp_path / "infraplan.db"
    with StateStore(state) as s:
        s.put("fleet.web[0]", kind="replica", provider="local",
              attributes={"fleet": "fleet.web", "index": 0, "instance_id": "gone-1", "pid": 2**22 + 7,
                          "started_at": 1.0, "endpoint": "http://127.0.0.1:9", "model_revision": "aaaa111"})
    return tmp_path


def drift(path, url):
    return run("drift", str(path), "--no-orphans", "--timeout", "0.5", "--alert", url, "--json")


def test_alerts_once_per_finding_then_on_change_and_on_clear(gone, webhook):
    for _ in range(3):  # a cron job every few minutes
        res = drift(gone, webhook.url)
        assert res.exit_code == 2, res.output
    assert len(webhook.messages) == 1
    first = webhook.messages[0]
    assert "2 new finding(s)" in first["title"]
    assert "[missing] fleet.web[0]" in first["message"] and "[changed] fleet.web" in first["message"]
    report = json.loads(res.stdout)
    assert report["alerts"] == {"appeared": 0, "cleared": 0, "sent": 0, "error": None}
    assert not any(f["new"] for f in report["findings"])

    with StateStore(gone / "infraplan.db") as s:  # the finding changes: another instance went missing
        rec = s.get("fleet.web[0]")
        s.put("fleet.web[0]", kind="replica", provider="local", attributes={**rec.attributes, "instance_id": "gone-2"})
    drift(gone, webhook.url)
    drift(gone, webhook.url)
    assert len(webhook.messages) == 3
    assert "1 new finding(s)" in webhook.messages[1]["title"] and "gone-2" in webhook.messages[1]["message"]
    assert "1 finding(s) cleared" in webhook.messages[2]["title"]
    assert "[missing] fleet.web[0]" in webhook.messages[2]["message"]

    with StateStore(gone / "infraplan.db") as s:  # fixed: the replica is gone from config and state
        s.remove("fleet.web[0]")
    (gone / "main.yaml").write_text(CONFIG.format(replicas=0))
    for _ in range(2):
        assert drift(gone, webhook.url).exit_code == 0
    assert len(webhook.messages) == 4
    assert "2 finding(s) cleared" in webhook.messages[3]["title"]


def test_an_alert_that_cannot_be_sent_is_retried_next_run(gone, webhook):
    dead = f"json://127.0.0.1:{free_port()}/hook"
    res = drift(gone, dead)
    assert res.exit_code == 2
    assert json.loads(res.stdout)["alerts"]["error"]
    assert webhook.messages == []
    drift(gone, webhook.url)
    drift(gone, webhook.url)
    assert len(webhook.messages) == 1 and "2 new finding(s)" in webhook.messages[0]["title"]


def test_bad_alert_url_is_an_error_before_anything_runs(gone):
    res = run("drift", str(gone), "--alert", "nosuchscheme://x")
    assert res.exit_code == 1 and "not a usable alert URL" in res.output
    assert StateStore.open_readonly(gone / "infraplan.db").drift_runs() == []


def test_fingerprint_ignores_detail_but_not_evidence(tmp_path):
    a = Finding("idle", "fleet.x[0]", "idle", [Evidence("requests", "a request", "3 in total", "m")], detail="idle for 10s")
    b = Finding("idle", "fleet.x[0]", "idle", [Evidence("requests", "a request", "3 in total", "m")], detail="idle for 70s")
    c = Finding("idle", "fleet.x[0]", "idle", [Evidence("requests", "a request", "4 in total", "m")])
    assert a.fingerprint == b.fingerprint != c.fingerprint
    with StateStore(tmp_path / "s.db") as store:
        assert track_and_alert(store, "t", [a])["appeared"] == 1  # no URLs: tracked, nothing marked sent
        assert track_and_alert(store, "t", [b])["appeared"] == 1
        assert store.alert_rows("t")[0]["notified_at"] is None
        assert store.serial == 0  # alert rows are not resource state


def test_send_alert_rejects_unknown_levels_and_urls():
    with pytest.raises(ValueError):
        send_alert(["json://127.0.0.1:9/x"], "t", "b", level="loud")
    with pytest.raises(InfraplanError, match="not a usable alert URL"):
        send_alert(["nosuchscheme://secret@host/path"], "t", "b")

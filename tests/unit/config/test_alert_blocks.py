"""`alert` blocks and a fleet's `idle_after` in the config language."""

from __future__ import annotations

import textwrap

from infraplan.config import validate_config

SECRET = "slack://T0SECRET/B0SECRET/XXSECRETXX"

BASE = """\
variable:
  hook: {type: string, sensitive: true, default: "SECRET"}
locals:
  channel: "#fleet"
model:
  m: {source: hf://org/m}
fleet:
  web:
    model: model.m
    idle_after: 30m
""".replace("SECRET", SECRET)


def load(tmp_path, extra: str):
    (tmp_path / "main.yaml").write_text(BASE + textwrap.dedent(extra))
    return validate_config(tmp_path, env={})


def errors(diags) -> list[str]:
    return [d.one_line() for d in diags if d.severity == "error"]


def test_alert_block_is_evaluated_and_its_url_is_sensitive(tmp_path):
    config, diags = load(tmp_path, """\
        alert:
          oncall:
            url: ${var.hook}
            events: [drift]
            min_severity: warning
          webhook:
            url: "json://127.0.0.1:9/${local.channel}"
        """)
    assert not errors(diags), errors(diags)
    oncall, webhook = config.alerts["oncall"], config.alerts["webhook"]
    assert (oncall.url, oncall.events, oncall.min_severity) == (SECRET, ["drift"], "warning")
    assert webhook.url == "json://127.0.0.1:9/#fleet"
    assert webhook.events == ["drift", "rollout"] and webhook.min_severity is None  # defaults: all topics
    assert {SECRET, webhook.url} <= config.sensitive_values  # redacted wherever output is
    assert SECRET not in repr(oncall)
    assert config.fleets["fleet.web"].block.idle_after == "30m"
    loc = config.location_of("alert.oncall.min_severity")
    assert loc is not None and loc.line == BASE.count("\n") + 5


def test_unknown_key_is_located_with_did_you_mean(tmp_path):
    config, diags = load(tmp_path, """\
        alert:
          oncall:
            url: ${var.hook}
            event: [drift]
        """)
    assert config is None
    (msg,) = errors(diags)
    line = BASE.count("\n") + 4
    assert f"main.yaml:{line}:5" in msg
    assert "unknown key 'event'; did you mean 'events'?" in msg and "alert.oncall.event" in msg


def test_bad_topic_and_severity_are_errors_at_their_place(tmp_path):
    _, diags = load(tmp_path, """\
        alert:
          a:
            url: json://127.0.0.1:9/x
            events: [drfit]
            min_severity: loud
        """)
    msgs = errors(diags)
    assert any("'drift' or 'rollout'" in m and "alert.a.events[0]" in m for m in msgs), msgs
    assert any("'info', 'warning' or 'error'" in m and "alert.a.min_severity" in m for m in msgs), msgs


def test_sensitive_url_is_never_printed_in_errors(tmp_path):
    no_scheme = "xoxb-SECRET-TOKEN-1234"
    (tmp_path / "vars.yaml").write_text(f'variable:\n  bad: {{type: string, sensitive: true, default: "{no_scheme}"}}\n')
    _, diags = load(tmp_path, f"""\
        alert:
          a: {{url: "${{var.bad}}"}}
          b: {{url: "{no_scheme}-literal"}}
          c: {{url: 424242, evnts: [drift]}}
        """)
    msgs = errors(diags)
    assert any("must be an Apprise URL" in m and "alert.a.url" in m for m in msgs), msgs
    assert any("must be an Apprise URL" in m and "alert.b.url" in m for m in msgs), msgs
    assert any("valid string" in m and "alert.c.url" in m for m in msgs), msgs
    assert any("did you mean 'events'" in m for m in msgs), msgs
    text = "\n".join(d.one_line() + str(d.detail or "") for d in diags)
    assert "SECRET" not in text and "424242" not in text


def test_fleet_fields_still_report_values(tmp_path):
    """Only alert URLs are hidden: other errors keep showing what was written."""
    (tmp_path / "main.yaml").write_text(BASE.replace("idle_after: 30m", "replicas: many"))
    _, diags = validate_config(tmp_path, env={})
    assert any("'many'" in m for m in errors(diags))


def test_bad_duration(tmp_path):
    for bad in ("2 hours", "0s", "-5m", "90", "h"):
        (tmp_path / "main.yaml").write_text(BASE.replace("idle_after: 30m", f"idle_after: {bad!r}"))
        config, diags = validate_config(tmp_path, env={})
        (msg,) = errors(diags)
        assert config is None and "fleet.web.idle_after" in msg and "positive duration" in msg, (bad, msg)
    for good in ("90s", "1.5h", "2d"):
        (tmp_path / "main.yaml").write_text(BASE.replace("idle_after: 30m", f"idle_after: {good}"))
        config, diags = validate_config(tmp_path, env={})
        assert config is not None and config.fleets["fleet.web"].block.idle_after == good

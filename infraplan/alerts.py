"""Alerts for the whole product, sent through Apprise (Slack, e-mail, webhooks, ... by URL).

    send_alert(["json://127.0.0.1:8080/hook"], "title", "body")      # one message, now
    track_and_alert(store, "drift", findings, urls=[...])             # de-duplicated

De-duplication: every finding has a `fingerprint` (a hash of what it says, not
of when it was seen). `track_and_alert` keeps one row per fingerprint and topic
in the state's ``alerts`` table (not resource state) and sends at most one
"appeared" message per finding until it changes (a changed finding has a new
fingerprint), and one "cleared" message when it is gone. A message that could
not be sent is retried on the next run. Without URLs findings are tracked but
nothing is marked as sent, so configuring alerts later reports what is open.
"""

from __future__ import annotations

from collections.abc import Sequence
from infraplan.util.time import utc_now
from typing import Any
from urllib.parse import urlsplit

from infraplan.errors import InfraplanError

LEVELS = ("info", "success", "warning", "failure")


def _now() -> str:
    return utc_now()


def redact_url(url: str) -> str:
    """An alert URL as it may be shown: its scheme only (``slack://…``), since tokens hide in
    every other part of it (Slack and PagerDuty put them in the host)."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    return f"{scheme or '?'}://…"


def _apprise(urls: Sequence[str]):
    try:
        import apprise
    except ImportError as exc:  # pragma: no cover - apprise is a core dependency
        raise InfraplanError("alerts need Apprise: pip install apprise") from exc
    ap = apprise.Apprise()
    for url in urls:
        if not ap.add(url):
            raise InfraplanError(f"not a usable alert URL: {redact_url(url)} (see Apprise's URL formats)")
    return ap, apprise


def check_urls(urls: Sequence[str]) -> None:
    """Raise InfraplanError when any alert URL is not one Apprise understands."""
    if urls:
        _apprise(urls)


def send_alert(urls: Sequence[str], title: str, body: str, level: str = "warning") -> bool:
    """Send one message to every URL; True when all accepted it."""
    if not urls:
        return True
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    ap, apprise = _apprise(urls)
    kind = {"info": apprise.NotifyType.INFO, "success": apprise.NotifyType.SUCCESS,
            "warning": apprise.NotifyType.WARNING, "failure": apprise.NotifyType.FAILURE}[level]
    return bool(ap.notify(title=title, body=body, notify_type=kind))


def _describe(f: Any) -> str:
    line = f"- [{f.kind}] {f.address}: {f.summary}"
    for e in getattr(f, "evidence", None) or []:
        line += f"\n    {e.field}: expected {e.expected!r} ({e.against}), seen {e.seen!r} — {e.source}"
    return line


def track_and_alert(store, topic: str, report_or_findings: Any, *, urls: Sequence[str] = (),
                    label: str = "") -> dict[str, Any]:
    """Record the findings' fingerprints for `topic`; alert what appeared and what cleared.

    Sets `first_seen` and `new` on each finding. Returns a summary:
    ``{"appeared": n, "cleared": n, "sent": messages sent, "error": str | None}``.
    """
    findings = list(getattr(report_or_findings, "findings", report_or_findings))
    now = _now()
    rows = {r["fingerprint"]: r for r in store.alert_rows(topic)}
    changed: dict[str, dict] = {}
    current = {f.fingerprint: f for f in findings}
    for fp, f in current.items():
        row = rows.get(fp)
        fresh = row is None or row.get("cleared_at") is not None
        if fresh:
            row = {"fingerprint": fp, "kind": f.kind, "address": f.address, "summary": f.summary,
                   "first_seen": now, "notified_at": None, "cleared_at": None, "clear_notified_at": None}
        row = dict(row, last_seen=now)
        changed[fp] = row
        f.first_seen, f.new = row["first_seen"], fresh
    for fp, row in rows.items():
        if fp not in current and row.get("cleared_at") is None:
            changed[fp] = dict(row, cleared_at=now)
    all_rows = {**rows, **changed}
    appeared = [current[fp] for fp, r in all_rows.items() if fp in current and r.get("notified_at") is None]
    to_clear = [r for r in all_rows.values()
                if r.get("cleared_at") and r.get("notified_at") and not r.get("clear_notified_at")]
    summary: dict[str, Any] = {"appeared": len(appeared), "cleared": len(to_clear), "sent": 0, "error": None}
    where = f" ({label})" if label else ""
    if urls:
        try:
            if appeared:
                body = "\n".join(_describe(f) for f in appeared)
                if send_alert(urls, f"infraplan {topic}{where}: {len(appeared)} new finding(s)", body, "warning"):
                    summary["sent"] += 1
                    for f in appeared:
                        changed[f.fingerprint] = dict(all_rows[f.fingerprint], notified_at=now)
                else:
                    summary["error"] = "an alert service did not accept the 'appeared' message"
            if to_clear:
                body = "\n".join(f"- [{r['kind']}] {r['address']}: {r['summary']} (since {r['first_seen']})" for r in to_clear)
                if send_alert(urls, f"infraplan {topic}{where}: {len(to_clear)} finding(s) cleared", body, "success"):
                    summary["sent"] += 1
                    for r in to_clear:
                        changed[r["fingerprint"]] = dict(all_rows[r["fingerprint"]], clear_notified_at=now)
                else:
                    summary["error"] = (summary["error"] + "; " if summary["error"] else "") + \
                        "an alert service did not accept the 'cleared' message"
        except InfraplanError as exc:
            summary["error"] = str(exc)
    store.save_alert_rows(topic, list(changed.values()))
    return summary

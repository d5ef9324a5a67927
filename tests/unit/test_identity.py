"""Who is acting, as every lock, history and audit row records it."""

from __future__ import annotations

from infraplan.util.identity import os_user, who


def test_explicit_actor_then_ci_identity_then_the_os_user():
    assert who({"INFRAPLAN_ACTOR": "alice@example.com", "GITHUB_ACTIONS": "true"}) == "alice@example.com"
    gh = {"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "bob", "GITHUB_REPOSITORY": "acme/fleets", "GITHUB_RUN_ID": "42",
          "CI": "true"}
    assert who(gh) == "github:bob (acme/fleets run 42)"
    assert who({**gh, "GITHUB_TRIGGERING_ACTOR": "carol"}).startswith("github:carol ")
    gl = {"GITLAB_CI": "true", "GITLAB_USER_LOGIN": "dan", "CI_PROJECT_PATH": "acme/fleets", "CI_PIPELINE_ID": "7",
          "CI": "true"}
    assert who(gl) == "gitlab:dan (acme/fleets pipeline 7)"
    assert who({"CI": "true"}) == f"ci:{os_user()}"
    assert who({}) == os_user() and "@" in os_user()
    assert who({"INFRAPLAN_ACTOR": "   "}) == os_user()  # blank is unset


def test_the_actor_is_what_history_and_audit_record(tmp_path, monkeypatch):
    from helpers.cli import SMALL_CONFIG, run
    from infraplan.state import StateStore

    (tmp_path / "main.yaml").write_text(SMALL_CONFIG)
    monkeypatch.setenv("INFRAPLAN_ACTOR", "release-bot")
    assert run("apply", str(tmp_path), "--auto-approve").exit_code == 0
    store = StateStore.open_readonly(tmp_path / "infraplan.db")
    assert store.history()[0].who == "release-bot"
    assert {a.who for a in store.audit_log()} == {"release-bot"}

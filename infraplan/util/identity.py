"""Who is acting: the one identity helper behind every lock, history, audit and approval row.

In order: an explicit ``INFRAPLAN_ACTOR``; else the CI's own identity when running in CI
(GitHub Actions, GitLab CI, then any system that sets ``CI``); else the OS user at this host.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping

ACTOR_ENV = "INFRAPLAN_ACTOR"


def hostname() -> str:
    return socket.gethostname()


def os_user() -> str:
    """`user@host` of this process (``uid<N>@host`` where the user has no name, as in containers)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{hostname()}"


def ci_actor(env: Mapping[str, str]) -> str | None:
    """The CI's identity for this run (who triggered it, in which repository and run), or None outside CI."""
    if env.get("GITHUB_ACTIONS") == "true":
        who = env.get("GITHUB_TRIGGERING_ACTOR") or env.get("GITHUB_ACTOR") or "unknown"
        return f"github:{who} ({env.get('GITHUB_REPOSITORY', '?')} run {env.get('GITHUB_RUN_ID', '?')})"
    if env.get("GITLAB_CI") == "true":
        who = env.get("GITLAB_USER_LOGIN") or "unknown"
        return f"gitlab:{who} ({env.get('CI_PROJECT_PATH', '?')} pipeline {env.get('CI_PIPELINE_ID', '?')})"
    if env.get("CI", "").lower() in ("true", "1", "yes"):
        return f"ci:{os_user()}"
    return None


def who(env: Mapping[str, str] | None = None) -> str:
    """The actor: ``INFRAPLAN_ACTOR``, else the CI's identity, else ``user@host``."""
    env = os.environ if env is None else env
    explicit = (env.get(ACTOR_ENV) or "").strip()
    if explicit:
        return explicit[:200]
    return ci_actor(env) or os_user()

"""Fixtures for the CLI tests: a clean environment and a seeded state file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers.cli import SMALL_CONFIG, checkpoint, children, run


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No variable values or colour settings leak in from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("INFRAPLAN_VAR_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory) -> Path:
    """A state file made by `infraplan apply` of SMALL_CONFIG (model + fleet of 0 replicas)."""
    root = tmp_path_factory.mktemp("seed")
    (root / "config").mkdir()
    (root / "config" / "main.yaml").write_text(SMALL_CONFIG)
    db = root / "config" / "infraplan.db"
    before = children()
    no_vars = {n: None for n in os.environ if n.startswith("INFRAPLAN_VAR_")}
    result = run("apply", str(root / "config"), "--auto-approve", "--refresh=false", env=no_vars)
    assert result.exit_code == 0, result.output
    assert children() <= before, "seeding must not start processes"
    checkpoint(db)
    return db


@pytest.fixture
def project(tmp_path, monkeypatch, seeded_template):
    """tmp_path/config with SMALL_CONFIG and a copy of the seeded state; cwd is tmp_path."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "main.yaml").write_text(SMALL_CONFIG)
    shutil.copy(seeded_template, cfg / "infraplan.db")
    monkeypatch.chdir(tmp_path)
    return cfg

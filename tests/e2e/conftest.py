"""Helpers for end-to-end tests: run the real CLI in a subprocess against a config in tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO

ROOT = REPO


class Project:
    def __init__(self, path: Path):
        self.path = path
        self.state = path / "infraplan.db"

    def run(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess:
        env = dict(os.environ, NO_COLOR="1")
        proc = subprocess.run([sys.executable, "-m", "infraplan", *args], cwd=self.path, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"infraplan {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        env = dict(os.environ, NO_COLOR="1")
        return subprocess.Popen([sys.executable, "-m", "infraplan", *args], cwd=self.path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def write(self, name: str, text: str) -> None:
        (self.path / name).write_text(text)


@pytest.fixture
def quickstart(tmp_path) -> Project:
    dst = tmp_path / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", dst, ignore=shutil.ignore_patterns("*.db*", ".infraplan"))
    project = Project(dst)
    yield project
    if project.state.exists():
        project.run("destroy", "--auto-approve", check=False)


@pytest.fixture
def project(tmp_path) -> Project:
    p = Project(tmp_path / "proj")
    p.path.mkdir()
    yield p
    if p.state.exists():
        p.run("destroy", "--auto-approve", check=False)

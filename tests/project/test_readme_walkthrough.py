"""The README's walk-through, run line by line in a copy of examples/quickstart: every command
succeeds (or says "changes", exit 2) and prints what its comment says it prints."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import REPO

pytestmark = pytest.mark.e2e

#: `+ ADDR`, `-/+ ADDR`, `+/- ADDR`, `~ ADDR`, `- ADDR` in a comment: a resource header the plan must print
CLAIM = re.compile(r"(?<!\S)(\+/-|-/\+|\+|~|-) ((?:model|fleet|router)\.[\w.\[\]\"-]+)")


def walkthrough() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    block = text.split("## A walk through", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    out = []
    for line in block.strip().splitlines():
        cmd, _, comment = line.partition("  #")
        out.append((cmd.strip(), comment.strip()))
    return out


def headers(stdout: str) -> set[tuple[str, str]]:
    """(symbol, address) of each resource header the text plan prints (`+/- replica fleet.chat[0] (local) {`)."""
    found = set()
    for line in stdout.splitlines():
        m = re.match(r"\s*(\+/-|-/\+|\+|~|-) (?:model|fleet|replica|router) (\S+)", line)
        if m:
            found.add((m.group(1), m.group(2)))
    return found


def on_a_terminal(cmd: str, cwd: Path, env: dict, answer: str) -> subprocess.CompletedProcess:
    """Run `cmd` with a pseudo-terminal as its stdin and stdout, typing `answer` when it asks."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    out, answered, deadline = b"", False, time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
            if not answered and b"Enter a value" in out:
                os.write(master, answer.encode() + b"\n")
                answered = True
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        while True:  # what is left after the exit
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace")).replace("\r", "")
    return subprocess.CompletedProcess(cmd, proc.returncode, text, "")


@pytest.mark.slow  # over 10 s of real processes: the test command's second step
def test_every_walkthrough_line_runs_and_prints_what_it_says(tmp_path):
    steps = walkthrough()
    assert steps[0][0] == "cd examples/quickstart" and len(steps) >= 8
    work = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", work, ignore=shutil.ignore_patterns("*.db*", ".infraplan"))
    env = dict(os.environ, NO_COLOR="1", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("INFRAPLAN_STATE", None)
    try:
        for cmd, comment in steps[1:]:
            if "asks for 'yes' on a terminal" in comment:
                proc = on_a_terminal(cmd, work, env, answer="yes")
                assert "Enter a value" in proc.stdout or "yes" in proc.stdout, proc.stdout
            else:
                proc = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], cwd=work, env=env,
                                      capture_output=True, text=True, timeout=120)
            out = proc.stdout + proc.stderr
            assert proc.returncode in (0, 2), f"{cmd!r} exited {proc.returncode}:\n{out}"
            assert "Traceback" not in out, out
            for symbol, address in CLAIM.findall(comment):
                assert (symbol, address) in headers(proc.stdout), f"{cmd!r}: the comment says {symbol} {address}:\n{out}"
            if "forces replacement" in comment:
                field = comment.split(":")[-1].split()[0]
                assert f"{field}" in proc.stdout and "forces replacement" in proc.stdout, out
            if "/v1/models" in cmd:
                assert '"object":"list"' in out.replace(" ", ""), out
    finally:
        subprocess.run([sys.executable, "-m", "infraplan", "destroy", "--auto-approve"], cwd=work, env=env,
                       capture_output=True, timeout=120)

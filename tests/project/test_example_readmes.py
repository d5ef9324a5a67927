"""The examples' READMEs: their commands run and print the figures they quote."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import REPO
from infraplan.providers.plugin.host import plugin_python

pytestmark = pytest.mark.e2e
from helpers.skypilot_plugin import CATALOGS  # noqa: E402 - one rule for where the catalogs are


def shell_block(readme: Path) -> list[tuple[str, str]]:
    """(command, comment) of each line of the README's first ```sh/```bash block."""
    text = readme.read_text()
    body = re.search(r"```(?:sh|bash)\n(.*?)```", text, re.S).group(1)
    return [(c.strip(), m.strip()) for c, _, m in (line.partition("  #") for line in body.strip().splitlines())]


def _env() -> dict:
    env = dict(os.environ, NO_COLOR="1", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("INFRAPLAN_STATE", None)
    return env


def test_the_drift_readme_runs_as_written(tmp_path):
    shutil.copytree(REPO / "examples" / "drift", tmp_path / "examples" / "drift",
                    ignore=shutil.ignore_patterns("*.db*", ".infraplan"))
    steps = shell_block(REPO / "examples" / "drift" / "README.md")
    assert steps[0][0].startswith("infraplan apply") and steps[-1][0].startswith("infraplan destroy")
    env = _env()
    try:
        for cmd, _ in steps:
            proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=120)
            assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, f"{cmd}: {proc.stdout}{proc.stderr}"
            if "--json" in cmd:
                assert '"format_version": "1.0"' in proc.stdout
    finally:
        subprocess.run([sys.executable, "-m", "infraplan", "destroy", "examples/drift", "--auto-approve"],
                       cwd=tmp_path, env=env, capture_output=True, timeout=120)


@pytest.mark.skipif(plugin_python("skypilot") is None, reason="skypilot plugin not installed")
@pytest.mark.skipif(not (CATALOGS / "v8").is_dir(), reason=f"shared SkyPilot catalogs not at {CATALOGS}")
def test_the_multicloud_readme_plans_offline_with_the_prices_it_quotes(tmp_path):
    work = tmp_path / "multicloud"
    shutil.copytree(REPO / "examples" / "multicloud", work, ignore=shutil.ignore_patterns("*.db*", ".infraplan"))
    steps = shell_block(REPO / "examples" / "multicloud" / "README.md")
    script = "\n".join(c for c, _ in steps[:2]).replace("../../../shared/catalogs", str(CATALOGS))
    plan_cmd, fail_cmd = steps[2], steps[3]
    env = _env()
    first = subprocess.run(["bash", "-c", f"{script}\n{plan_cmd[0]}"], cwd=work, env=env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode in (0, 2), first.stdout + first.stderr
    second = subprocess.run(["bash", "-c", f"{script}\n{fail_cmd[0]}"], cwd=work, env=env, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 1 and "fails" in fail_cmd[1], second.stdout + second.stderr
    for figure in re.findall(r"\$\d+\.\d\d/h", fail_cmd[1]):  # every price the comment quotes, printed
        assert figure in first.stdout, f"the README quotes {figure}; the plan printed:\n{first.stdout}"
    total = re.findall(r"\$\d+\.\d\d/h", fail_cmd[1])[-1]
    assert f"Total: {total}" in first.stdout and total in second.stderr + second.stdout
    readme = (REPO / "examples" / "multicloud" / "README.md").read_text()
    controller = re.search(r"SkyServe controller: \.\.\. (\$\d+\.\d\d/h)", readme).group(1)
    assert "SkyServe controller: one per SkyPilot user" in first.stdout and controller in first.stdout
    if "GPU-fit arithmetic" in readme:  # shown in the text plan, not only in --json
        assert "fit: total:" in first.stdout and "GiB per H100" in first.stdout, first.stdout

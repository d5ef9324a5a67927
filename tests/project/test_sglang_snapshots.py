"""Each committed SGLang parser snapshot is what scripts/snapshot_sglang_args.py makes from the release's wheel.

Needs the package registry (`pip download sglang==VERSION`); skipped when it cannot be reached."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infraplan.serving.sglang_args import SNAPSHOT_DIR, SUPPORTED_VERSIONS
from helpers.paths import REPO

SCRIPT = REPO / "scripts" / "snapshot_sglang_args.py"

pytestmark = [pytest.mark.registry, pytest.mark.timeout(600)]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_the_script_reproduces_the_committed_snapshot_byte_for_byte(version, tmp_path):
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                          f"sglang=={version}", "--dest", str(tmp_path)], capture_output=True, text=True)
    wheels = list(tmp_path.glob(f"sglang-{version}-*.whl"))
    if got.returncode != 0 or not wheels:
        pytest.skip(f"the package registry is unreachable (pip download sglang=={version}): {got.stderr[-300:]}")
    out = tmp_path / f"{version}.json"
    run = subprocess.run([sys.executable, str(SCRIPT), version, "--wheel", str(wheels[0]), "--out", str(out)],
                         capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.read_bytes() == (SNAPSHOT_DIR / f"{version}.json").read_bytes()

"""SkyPilot, imported in-process, pointed at the real catalog rows in /work/shared/catalogs (../shared/catalogs).

As the catalogs' README says: a temporary SKY_RUNTIME_DIR holding a copy of `v8`,
HOME in a temporary directory while `sky` is imported (no ~/.sky or credentials),
no AWS metadata probe, and the optimizer's enabled clouds patched to the four
clouds the catalogs hold.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers.paths import REPO

CATALOGS = Path(os.environ.get("INFRAPLAN_SKY_CATALOGS", REPO.parent / "shared" / "catalogs"))


def _prepare_sky():
    if not (CATALOGS / "v8").is_dir():
        pytest.skip(f"shared SkyPilot catalogs not found at {CATALOGS}", allow_module_level=True)
    runtime = Path(tempfile.mkdtemp(prefix="infraplan-sky-"))
    (runtime / ".sky" / "catalogs").mkdir(parents=True)
    shutil.copytree(CATALOGS / "v8", runtime / ".sky" / "catalogs" / "v8")
    os.environ["SKY_RUNTIME_DIR"] = str(runtime)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    home = os.environ.get("HOME")
    os.environ["HOME"] = str(runtime / "home")
    try:
        sky = pytest.importorskip("sky")
        import sky.catalog.common  # noqa: F401 - fixes the catalog path now, under SKY_RUNTIME_DIR
        import sky.check  # noqa: F401
        import sky.optimizer  # noqa: F401
    finally:
        if home is not None:
            os.environ["HOME"] = home
    return sky


sky = _prepare_sky()

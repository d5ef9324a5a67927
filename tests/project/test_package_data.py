"""Every data file the code reads ships in the wheel: the package-data patterns cover them all.
(A JSON file left out made the wheel's simulator drop every connection.)"""

from __future__ import annotations

import tomllib

from helpers.paths import REPO


def test_every_data_file_under_the_packages_is_in_package_data():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    missing = []
    for package, globs in patterns.items():
        root = REPO / package
        shipped = {p for g in globs for p in root.glob(g)}
        for f in root.rglob("*"):
            if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts and f not in shipped:
                missing.append(str(f.relative_to(REPO)))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"

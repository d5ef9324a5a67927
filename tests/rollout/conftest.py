"""Fixtures of the rollout tests (helpers in rollout_helpers, a uniquely named module)."""

from __future__ import annotations

import pytest

from rollout_helpers import Fleet


@pytest.fixture
def make_fleet(tmp_path, leftover_servers):
    made: list[Fleet] = []

    def make(n: int) -> Fleet:
        f = Fleet(tmp_path / f"f{len(made)}", n)
        made.append(f)
        return f

    yield make
    for f in made:
        f.cleanup()
    assert not leftover_servers()

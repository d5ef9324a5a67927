"""`plan` keeps the cyclic GC off while it works and leaves it as it found it."""

from __future__ import annotations

import gc

import pytest
from click.testing import CliRunner

from infraplan.cli.main import cli
from infraplan.cli import common
from infraplan.util.gc_pause import no_cyclic_gc


def test_no_cyclic_gc_restores_the_gc_state_even_on_error():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), no_cyclic_gc():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with no_cyclic_gc():
            pass
        assert not gc.isenabled()  # was off before: stays off
    finally:
        gc.enable()


def test_plan_runs_with_the_gc_off(tmp_path, monkeypatch):
    (tmp_path / "main.yaml").write_text("# empty\n")
    seen = []
    real = common.open_workspace

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr("infraplan.cli.commands.plan.open_workspace", spy)
    result = CliRunner().invoke(cli, ["plan", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen == [False]
    assert gc.isenabled()

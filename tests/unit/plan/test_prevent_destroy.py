"""`lifecycle.prevent_destroy` holds for destroy, --target destroys, replacements and scale-downs,
from the config, with the reason shown; nothing is applied."""

from __future__ import annotations

import pytest

from helpers.cli import fingerprint, run

CONFIG = """\
provider:
  box: {{type: "null"}}
model:
  m: {{source: hf://org/m, revision: "{rev}"}}
fleet:
  web:
    provider: box
    model: model.m
    replicas: {n}
    lifecycle: {{prevent_destroy: true}}
"""


@pytest.fixture
def applied(tmp_path):
    (tmp_path / "main.yaml").write_text(CONFIG.format(rev="a1", n=2))
    r = run("apply", str(tmp_path), "--auto-approve")
    assert r.exit_code == 0, r.output
    return tmp_path


@pytest.mark.parametrize("change, args, address, why", [
    (None, ("destroy",), "fleet.web[0]", "destroy requested"),
    (None, ("destroy", "--target", "fleet.web[1]"), "fleet.web[1]", "destroy requested"),
    ({"rev": "a1", "n": 1}, ("apply",), "fleet.web[1]", "no longer in the configuration"),
    ({"rev": "b2", "n": 2}, ("apply",), "fleet.web[0]", 'model_revision: "a1" -> "b2" forces replacement'),
])
def test_a_protected_fleet_is_never_destroyed_or_replaced(applied, change, args, address, why):
    if change:
        (applied / "main.yaml").write_text(CONFIG.format(**change))
    db = applied / "infraplan.db"
    before = fingerprint(db)
    r = run(*args, str(applied), "--auto-approve")
    assert r.exit_code == 1, r.output
    assert f"{address} has lifecycle.prevent_destroy set" in r.output and why in r.output
    assert "main.yaml:6:3" in r.output and "(at fleet.web.lifecycle.prevent_destroy)" in r.output
    assert fingerprint(db)["serial"] == before["serial"]  # nothing applied

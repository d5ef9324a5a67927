"""The Diagnostics collection: one de-duplication rule, used by the loader and the planner."""

from __future__ import annotations

from infraplan.diagnostics import Diagnostic, Diagnostics, Location, did_you_mean


def test_one_problem_at_one_place_is_kept_once():
    at = Location("main.yaml", 7, 5)
    ds = Diagnostics()
    # the replicas of one fleet block report the same thing at the block's location
    assert ds.append(Diagnostic("bad setting", location=at, path="fleet.chat[0]"))
    assert not ds.append(Diagnostic("bad setting", location=at, path="fleet.chat[1]"))
    # without a location the config path tells problems apart
    ds.extend([Diagnostic("refresh failed", severity="warning", path="fleet.chat[0]"),
               Diagnostic("refresh failed", severity="warning", path="fleet.chat[1]"),
               Diagnostic("refresh failed", severity="warning", path="fleet.chat[1]")])
    # the same text as a warning and as an error are two problems
    ds.append(Diagnostic("bad setting", severity="warning", location=at))
    assert [(d.summary, d.severity, d.path) for d in ds] == [
        ("bad setting", "error", "fleet.chat[0]"), ("refresh failed", "warning", "fleet.chat[0]"),
        ("refresh failed", "warning", "fleet.chat[1]"), ("bad setting", "warning", None)]
    assert ds.has_errors() and len(ds.errors) == 1 and len(ds.warnings) == 3
    assert ds.to_json()[0]["location"] == {"file": "main.yaml", "line": 7, "col": 5}


def test_did_you_mean():
    assert did_you_mean("tp_szie", ["tp_size", "dp_size"]) == "; did you mean 'tp_size'?"
    assert did_you_mean("zzz", ["tp_size"]) == ""


def test_short_repr_cuts_long_values_with_an_ellipsis():
    from infraplan.diagnostics import short_repr

    assert short_repr("locl") == "'locl'"
    cut = short_repr("x" * 1_000_000)
    assert len(cut) == 80 and cut.startswith("'xxx") and cut.endswith("…'")
    assert did_you_mean("y" * 1_000_000, ["local"]) == ""  # no quadratic difflib on a huge word

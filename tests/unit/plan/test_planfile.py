"""The plan-file schema covers every field of the plan it reads back."""

from __future__ import annotations

from dataclasses import fields

from infraplan.plan.model import Change
from infraplan.plan.planfile import ApplyOptions
from infraplan.plan.planfile_schema import ApplyOptionsFile, ChangeFile


def test_schema_names_every_change_and_apply_option_field():
    """A field added to Change or ApplyOptions must be added to the schema, or saved plans are refused."""
    assert set(ChangeFile.model_fields) == {f.name for f in fields(Change)}
    assert set(ApplyOptionsFile.model_fields) == {f.name for f in fields(ApplyOptions)}
    assert ApplyOptionsFile().model_dump() == vars(ApplyOptions())

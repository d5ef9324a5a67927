"""The committed JSON Schema is the one the models generate."""

from __future__ import annotations

import json

from infraplan.models.schema import SCHEMA_ID, schema_json
from helpers.paths import REPO

SCHEMA_FILE = REPO / "schemas" / "infraplan.schema.json"


def test_committed_schema_is_current():
    committed = SCHEMA_FILE.read_text()
    assert committed == schema_json(), (
        f"{SCHEMA_FILE} is stale: the config models changed. Regenerate it with "
        "`infraplan schema --out schemas/infraplan.schema.json` and commit the result."
    )


def test_schema_describes_the_config_language():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$id"] == SCHEMA_ID
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"variable", "locals", "provider", "model", "fleet", "output"} <= set(schema["properties"])
    assert schema.get("additionalProperties") is False, "unknown top-level keys must be flagged by editors"

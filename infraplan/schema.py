"""JSON Schema of the configuration language, generated from the pydantic models."""

from __future__ import annotations

import json

SCHEMA_ID = "https://infraplan.dev/schemas/infraplan.schema.json"


def config_schema() -> dict:
    from infraplan.models import ConfigFile

    schema = ConfigFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "infraplan configuration file"
    return schema


def schema_json() -> str:
    return json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"

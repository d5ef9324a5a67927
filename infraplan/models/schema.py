"""JSON Schema of the configuration language, generated from the pydantic models."""

from __future__ import annotations

import json

SCHEMA_ID = "https://infraplan.dev/schemas/infraplan.schema.json"


def config_schema() -> dict:
    from infraplan.models import ConfigFile

    schema = ConfigFile.model_json_schema()
    _allow_interpolation(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "infraplan configuration file"
    return schema


def schema_json() -> str:
    return json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"


_INTERPOLATION = {"type": "string", "pattern": "\\$\\{", "description": "An interpolation such as ${var.replicas}."}


def _allow_interpolation(node) -> None:
    """Let editors accept `${...}` where a number, bool, list or map is expected: the loader
    checks the type after interpolation."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for name, prop in props.items():
                if isinstance(prop, dict) and prop.get("type") in ("integer", "number", "boolean", "array"):
                    keep = {k: prop.pop(k) for k in ("description", "default", "title") if k in prop}
                    props[name] = {"anyOf": [prop, _INTERPOLATION], **keep}
        for v in node.values():
            _allow_interpolation(v)
    elif isinstance(node, list):
        for v in node:
            _allow_interpolation(v)
